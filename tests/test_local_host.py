"""The local EC2 host against a real moto server, with real (tiny) processes standing in for workers.

The full worker is exercised in tests/test_fleet_e2e.py; here the process lifecycle is what matters,
so each test picks a small Python program with the behaviour it needs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from controller.local_host import LocalHost
from sightfleet.aws.ec2 import Fleet
from tests.support import alive, wait_for

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
