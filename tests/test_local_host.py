"""The local EC2 host against a real moto server, with real (tiny) processes standing in for workers.

The full worker is exercised in tests/test_fleet_e2e.py; here the process lifecycle is what matters,
so each test picks a small Python program with the behaviour it needs.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from devstack.local_host import LocalHost
from sightfleet.aws.ec2 import Fleet
from tests.support import alive, wait_for

pytestmark = pytest.mark.slow  # worker processes

SLEEPER = (sys.executable, "-c", "import time; time.sleep(600)")
STUBBORN = (sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                  "time.sleep(600)")


@pytest.fixture
def fleet(settings) -> Fleet:
    return Fleet(settings)


@pytest.fixture
def make_host(fleet):
    hosts = []

    def make(command, stop_grace_s: float = 5.0) -> LocalHost:
        host = LocalHost(fleet, {"SIGHTFLEET_PREFIX": "t"}, command=command, stop_grace_s=stop_grace_s)
        hosts.append(host)
        return host
    yield make
    for host in hosts:
        host.shutdown()


def live_ids(fleet: Fleet) -> set[str]:
    return {i.id for i in fleet.instances()}


def step_until(host: LocalHost, check, timeout_s: float = 15, what: str = "condition"):
    def stepped():
        host.step()
        return check()
    return wait_for(stepped, timeout_s, 0.2, what)


def test_each_instance_becomes_one_process_with_its_id(fleet, make_host):
    host = make_host(SLEEPER)
    ids = fleet.launch(2, "#!/bin/bash\n")
    host.step()
    host.step()
    pids = host.pids()
    assert set(pids) == set(ids)
    for instance_id, pid in pids.items():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"SIGHTFLEET_INSTANCE_ID={instance_id}".encode() in environ
        assert alive(pid)


def test_terminated_instance_stops_its_process(fleet, make_host):
    host = make_host(SLEEPER)
    keep, gone = fleet.launch(2, "#!/bin/bash\n")
    host.step()
    pids = host.pids()
    fleet.terminate([gone])
    # Dead and reaped: the process can die between a step's reaping and the check.
    step_until(host, lambda: not alive(pids[gone]) and gone not in host.pids(),
               what="the terminated instance's process to stop")
    assert set(host.pids()) == {keep} and alive(pids[keep])


@pytest.mark.parametrize("code", [3, 0])
def test_process_exit_terminates_its_instance_like_a_crashed_vm(fleet, make_host, code):
    host = make_host((sys.executable, "-c", f"import sys; sys.exit({code})"))
    instance_id, = fleet.launch(1, "#!/bin/bash\n")
    host.step()
    step_until(host, lambda: instance_id not in live_ids(fleet), what="the instance to be terminated")
    host.step()
    assert host.pids() == {}  # not booted again
    states = {i.id: i.state for i in fleet.instances(states=("terminated", "shutting-down"))}
    assert instance_id in states


def test_stubborn_process_is_killed_after_the_grace(fleet, make_host):
    host = make_host(STUBBORN, stop_grace_s=1.0)
    instance_id, = fleet.launch(1, "#!/bin/bash\n")
    host.step()
    pid = host.pids()[instance_id]
    wait_for(lambda: _ignores_term(pid), 10, what="the process to ignore SIGTERM")
    fleet.terminate([instance_id])
    host.step()
    assert alive(pid)  # SIGTERM alone does not stop it
    step_until(host, lambda: not alive(pid), timeout_s=10, what="SIGKILL after the grace")


def test_shutdown_stops_every_worker_and_terminates_their_instances(fleet, make_host):
    host = make_host(STUBBORN, stop_grace_s=1.0)
    ids = fleet.launch(3, "#!/bin/bash\n")
    host.step()
    pids = list(host.pids().values())
    assert len(pids) == 3
    host.shutdown()
    assert not any(alive(pid) for pid in pids)
    assert live_ids(fleet).isdisjoint(ids)


def _ignores_term(pid: int) -> bool:
    """True once the process has set SIGTERM to ignored (bit 15 of SigIgn)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << 14))
    return False


# -- the endpoint going away and coming back ------------------------------------------------------

@pytest.fixture
def own_endpoint():
    """A moto server of this test's own (it is stopped, killed and restarted on its port)."""
    from tests.support import start_moto
    proc, url = start_moto()
    endpoint = {"proc": proc, "url": url}
    yield endpoint
    endpoint["proc"].kill()
    endpoint["proc"].wait()


def _own_fleet(url: str) -> Fleet:
    from sightfleet.config import Settings
    from tests.support import unique_prefix
    return Fleet(Settings(endpoint_url=url, prefix=unique_prefix()))


def test_a_frozen_endpoint_leaves_every_worker_running(own_endpoint):
    """SIGSTOP of the endpoint (as the chaos test does): the round waits, nothing is stopped, nothing crashes."""
    import signal
    import threading
    import time

    from tests.support import descendants
    fleet = _own_fleet(own_endpoint["url"])
    # gunicorn's master and the process serving moto under it: both freeze.
    frozen = [own_endpoint["proc"].pid, *descendants(own_endpoint["proc"].pid)]

    def signal_all(signum):
        for pid in frozen:
            os.kill(pid, signum)
    host = LocalHost(fleet, {}, command=SLEEPER, stop_grace_s=1.0)
    try:
        fleet.launch(2, "#!/bin/bash\n")
        host.step()
        pids = host.pids()
        signal_all(signal.SIGSTOP)
        stepping = threading.Thread(target=host.step)
        stepping.start()
        time.sleep(3)
        assert stepping.is_alive()  # the listing waits on the frozen endpoint
        assert host.pids() == pids and all(alive(pid) for pid in pids.values())
        signal_all(signal.SIGCONT)
        stepping.join(timeout=60)
        assert not stepping.is_alive()
        assert host.pids() == pids and all(alive(pid) for pid in pids.values())
    finally:
        signal_all(signal.SIGCONT)
        host.shutdown()


def test_workers_outlive_a_dead_endpoint_and_stop_when_it_returns_without_their_instances(own_endpoint, caplog):
    import logging
    import signal
    import subprocess
    from urllib.parse import urlparse

    from devstack.stack import answers, moto_command
    from tests.support import descendants
    caplog.set_level(logging.INFO, "devstack.local_host")
    fleet = _own_fleet(own_endpoint["url"])
    host = LocalHost(fleet, {}, command=SLEEPER, stop_grace_s=2.0)
    try:
        fleet.launch(2, "#!/bin/bash\n")
        host.step()
        pids = host.pids()
        for pid in [own_endpoint["proc"].pid, *descendants(own_endpoint["proc"].pid)]:
            os.kill(pid, signal.SIGKILL)  # the master and the process serving under it
        own_endpoint["proc"].wait()
        wait_for(lambda: not answers(own_endpoint["url"] + "/moto-api/"), 10, what="the endpoint to be gone")
        for _ in range(3):
            host.step()  # each listing fails: connection refused
        assert host.pids() == pids and all(alive(pid) for pid in pids.values())
        assert caplog.text.count("cannot list instances") == 1  # said once per outage
        # The endpoint comes back on the same URL, empty: those instances no longer exist.
        own_endpoint["proc"] = subprocess.Popen(moto_command(urlparse(own_endpoint["url"]).port),
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: answers(own_endpoint["url"] + "/moto-api/"), 30, what="the endpoint to return")
        step_until(host, lambda: not host.pids() and not any(alive(pid) for pid in pids.values()),
                   what="the workers of vanished instances to stop")
        assert "instances listed again" in caplog.text
        assert "its instance is gone" in caplog.text
    finally:
        host.shutdown()


def test_a_new_host_terminates_the_instances_its_predecessor_left_running(fleet, make_host):
    left = fleet.launch(2, "#!/bin/bash\n")
    host = make_host(SLEEPER)
    assert host.retire_orphans()
    assert live_ids(fleet).isdisjoint(left)
    later, = fleet.launch(1, "#!/bin/bash\n")
    host.step()
    assert set(host.pids()) == {later}  # what is launched afterwards is hosted as usual


def test_an_unexpected_error_in_a_round_does_not_end_the_host(fleet, caplog):
    """A fleet that fails in a way nobody planned for (injected): the host logs it and keeps going."""
    import logging
    import threading

    class Unplanned:
        calls = 0

        def instances(self, states=None):
            Unplanned.calls += 1
            if 2 <= Unplanned.calls <= 4:  # the first call is retire_orphans at start
                raise RuntimeError("injected")
            return []

        def terminate(self, ids):
            pass
    caplog.set_level(logging.INFO, "devstack.local_host")
    host = LocalHost(Unplanned(), {}, command=SLEEPER, poll_s=0.05)
    stop = threading.Event()
    running = threading.Thread(target=host.run, args=(stop,))
    running.start()
    wait_for(lambda: Unplanned.calls >= 6, 10, 0.05, what="rounds after the errors")
    assert running.is_alive()
    stop.set()
    running.join(timeout=10)
    assert "unexpected error in a round" in caplog.text
