"""The warm pool against the real local endpoint: EC2 stop/start, a controller tick, the local host's SIGSTOP/SIGCONT.

The policy's rules are in tests/test_policy.py (POOL_CASES), the worker's way into the pool and
back in tests/test_worker_faults.py, the whole fleet in tests/test_warm_pool_e2e.py.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.loop import Controller
from devstack.local_host import LocalHost
from sightfleet.aws.ec2 import HIBERNATION_REFUSED, POOLED_AT_TAG, STARTED_AT_TAG, Fleet
from sightfleet.aws.session import client
from sightfleet.contracts import iso
from sightfleet.errors import SightfleetError
from sightfleet.resources import Resources
from tests.support import REPO, alive, descendants, wait_for

pytestmark = pytest.mark.slow  # workers pooled and resumed

SLEEPER = (sys.executable, "-c", "import time; time.sleep(600)")


def proc_state(pid: int) -> str:
    """The process's state letter in /proc (R, S, T for stopped, Z)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def by_id(fleet: Fleet) -> dict:
    return {i.id: i for i in fleet.instances(states=("pending", "running", "stopping", "stopped", "terminated"))}


def test_stop_hibernates_into_the_pool_and_start_brings_it_back_with_its_times(settings):
    fleet = Fleet(settings)
    instance_id, other = fleet.launch(2, "#!/bin/bash\n")
    before = time.time()
    assert fleet.stop([instance_id]) is True   # moto accepts Hibernate=True
    pooled = by_id(fleet)[instance_id]
    assert pooled.state == "stopped" and pooled.pooled_at.timestamp() >= before - 1
    assert pooled.started_at is None and pooled.up_since == pooled.launched_at
    assert {i.id for i in fleet.instances()} == {other}   # the live listing leaves the pool out
    fleet.start([instance_id])
    started = by_id(fleet)[instance_id]
    assert started.state == "running" and started.started_at >= pooled.pooled_at
    assert started.up_since == started.started_at and started.tags[POOLED_AT_TAG] and started.tags[STARTED_AT_TAG]
    fleet.start([])
    assert fleet.stop([]) is True


def test_an_instance_that_cannot_be_stopped_at_all_raises(settings):
    fleet = Fleet(settings)
    [instance_id] = fleet.launch(1, "#!/bin/bash\n")
    client(settings, "ec2").modify_instance_attribute(InstanceId=instance_id, DisableApiStop={"Value": True})
    with pytest.raises(SightfleetError):
        fleet.stop([instance_id])   # not a hibernation refusal: no plain stop is tried, the worker retires
    assert by_id(fleet)[instance_id].state == "running"


def test_the_hibernation_refusals_are_the_ones_aws_documents():
    # StopInstances' answers when hibernation is impossible but a plain stop may still work.
    assert {"UnsupportedHibernationConfiguration", "UnsupportedOperation"} <= HIBERNATION_REFUSED
    assert "OperationDisableApiStopNotPermitted" not in HIBERNATION_REFUSED


def test_a_tick_starts_the_pool_first_and_leaves_pooled_silence_alone(settings_factory):
    settings = settings_factory(max_instances=4, warm_pool_size=2)
    resources = Resources.connect(settings)
    pooled = resources.fleet.launch(2, "#!/bin/bash\n")
    resources.fleet.stop(pooled)
    long_ago = time.time() - 3600   # their last heartbeat, from before the pool: far past the timeout
    for instance_id in pooled:
        resources.fleet_log.put("worker", instance_id, {"instance_id": instance_id, "state": "pooled",
                                                        "last_heartbeat": iso(long_ago)})
    controller = Controller(resources, settings)
    assert controller.tick().terminate == ()   # silent for an hour, but stopped: not reaped
    for n in range(25):
        resources.requests.send(f"job {n}")
    decision = controller.tick()
    assert set(decision.start) == set(pooled) and decision.launch == 1 and decision.terminate == ()
    live = {i.id: i.state for i in resources.fleet.instances()}
    assert len(live) == 3 and set(pooled) <= set(live)
    latest = resources.fleet_log.all("decision", newest_first=True, limit=1)[0]
    assert set(latest["started"]) == set(pooled) and len(latest["launched"]) == 1
    # Next tick: their heartbeats are still an hour old, but the timeout runs from the start.
    assert controller.tick().terminate == ()


def test_the_local_host_freezes_a_stopped_instance_and_resumes_the_same_process(settings):
    fleet = Fleet(settings)
    host = LocalHost(fleet, {"SIGHTFLEET_PREFIX": settings.prefix}, command=SLEEPER, stop_grace_s=5)
    try:
        instance_id, = fleet.launch(1, "#!/bin/bash\n")
        host.step()
        pid = host.pids()[instance_id]
        fleet.stop([instance_id])
        host.step()
        wait_for(lambda: proc_state(pid) == "T", 5, 0.05, "the process stopped (state T)")
        assert host.paused() == {instance_id} and alive(pid)
        host.step()   # a frozen worker is neither dead nor restarted
        assert host.pids() == {instance_id: pid} and by_id(fleet)[instance_id].state == "stopped"
        fleet.start([instance_id])
        host.step()
        wait_for(lambda: proc_state(pid) in "RS", 5, 0.05, "the process running again")
        assert host.pids() == {instance_id: pid} and not host.paused()
        fleet.stop([instance_id])
        host.step()
        fleet.terminate([instance_id])   # terminated while frozen: resumed so that SIGTERM is handled
        wait_for(lambda: host.step() or not alive(pid), 10, 0.1, "the frozen worker to stop")
    finally:
        host.shutdown()


def test_the_local_host_shuts_down_frozen_workers_too(settings):
    fleet = Fleet(settings)
    host = LocalHost(fleet, {"SIGHTFLEET_PREFIX": settings.prefix}, command=SLEEPER, stop_grace_s=5)
    ids = fleet.launch(2, "#!/bin/bash\n")
    host.step()
    pids = list(host.pids().values())
    fleet.stop(ids[:1])
    host.step()
    assert host.paused() == {ids[0]}
    host.shutdown()
    assert not any(alive(pid) for pid in pids)
    assert {i.id: i.state for i in fleet.instances(states=("stopped", "running"))} == {}


def test_a_worker_that_ended_while_stopped_is_booted_afresh_on_start(settings):
    fleet = Fleet(settings)
    host = LocalHost(fleet, {"SIGHTFLEET_PREFIX": settings.prefix},
                     command=(sys.executable, "-c", "import time; time.sleep(1.5)"), stop_grace_s=5)
    try:
        instance_id, = fleet.launch(1, "#!/bin/bash\n")
        host.step()
        first = host.pids()[instance_id]
        fleet.stop([instance_id])   # the host has not frozen it yet when it ends by itself
        wait_for(lambda: not alive(first), 10, 0.1, "the process to end while its instance is stopped")
        host.step()
        assert by_id(fleet)[instance_id].state == "stopped" and host.pids() == {}
        fleet.start([instance_id])
        host.step()
        assert host.pids()[instance_id] != first   # like a plain stop: the instance boots again
    finally:
        host.shutdown()


HOST_SCRIPT = """
import os, sys, time
from devstack.local_host import LocalHost
from sightfleet.aws.ec2 import Fleet
from sightfleet.config import Settings
settings = Settings(endpoint_url=sys.argv[1], prefix=sys.argv[2])
host = LocalHost(Fleet(settings), dict(os.environ), command=(sys.executable, "-c", "import time; time.sleep(600)"))
assert host.retire_orphans()
print("ready", flush=True)
while True:   # the host's rounds, as run() makes them
    host.step()
    time.sleep(0.1)
"""


def test_a_new_host_ends_the_workers_a_killed_host_left_frozen(settings):
    fleet = Fleet(settings)
    old = subprocess.Popen([sys.executable, "-c", HOST_SCRIPT, settings.endpoint_url, settings.prefix], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert old.stdout.readline().strip() == "ready"
        instance_id, = fleet.launch(1, "#!/bin/bash\n")
        [pid] = wait_for(lambda: descendants(old.pid), 30, 0.1, "the old host's worker")
        fleet.stop([instance_id])
        wait_for(lambda: proc_state(pid) == "T", 10, 0.05, "the worker frozen in the pool")
        old.send_signal(signal.SIGKILL)
        old.wait(10)
        time.sleep(0.5)
        assert alive(pid) and proc_state(pid) == "T"   # its death signal waits for a SIGCONT
        new = LocalHost(fleet, {"SIGHTFLEET_PREFIX": settings.prefix}, command=SLEEPER)
        assert new.retire_orphans()
        wait_for(lambda: not alive(pid), 10, 0.1, "the frozen worker to end")
        assert by_id(fleet)[instance_id].state == "terminated"
    finally:
        if old.poll() is None:
            old.kill()


def test_the_dashboard_shows_pooled_instances_apart_and_bills_running_time_only(app, admin_client, resources):
    client = admin_client  # the dashboard is for admins
    from prometheus_client.parser import text_string_to_metric_families
    from web_tier.opsdata import OpsData
    from web_tier.services import services_of
    running, pooled = resources.fleet.launch(2, "#!/bin/bash\n")
    resources.fleet.stop([pooled])
    now = time.time() + 1
    # Launched 1,000 s ago; ran 100 s, 700 s in the pool, resumed and ran 100 s, in the pool again for 100 s.
    resources.fleet_log.put("worker", pooled, {
        "instance_id": pooled, "state": "pooled", "launched_at": iso(now - 1000), "last_heartbeat": iso(now - 100),
        "pooled_at": iso(now - 100), "pooled_s": 700.0, "resumes": 1, "last_resume_s": 0.02, "model_load_s": 2.5,
        "images_done": 4, "images_failed": 0, "current": []})
    resources.fleet_log.put("worker", running, {
        "instance_id": running, "state": "idle", "launched_at": iso(now - 50), "last_heartbeat": iso(now - 1),
        "images_done": 0, "images_failed": 0, "current": [], "model_load_s": 2.0})
    services_of(app).ops = OpsData(resources, clock=lambda: now)
    doc = client.get("/api/ops/summary").get_json()
    assert (doc["instances"]["running"], doc["instances"]["pooled"]) == (1, 1)
    rows = {w["instance_id"]: w for w in doc["workers"]}
    assert list(rows)[:2] == [running, pooled]   # live first, then the pool
    row = rows[pooled]
    assert (row["state"], row["live"], row["pooled"], row["ec2_state"]) == ("pooled", False, True, "stopped")
    assert (row["uptime_s"], row["resumes"], row["model_load_s"], row["last_resume_s"]) == (200.0, 1, 2.5, 0.02)
    assert doc["totals"]["instance_seconds"] == pytest.approx(200 + 50, abs=0.5)   # the pool's time is not billed
    samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "stack"))): s.value
               for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
               for s in family.samples}
    assert samples[("sightfleet_instances", (("state", "pooled"),))] == 1
    assert samples[("sightfleet_instances", (("state", "running"),))] == 1


def test_pool_settings_from_the_environment_and_their_defaults():
    from sightfleet.config import ConfigError, Settings
    from devstack.stack import LOCAL_DEFAULTS
    settings = Settings.from_env({"SIGHTFLEET_WARM_POOL_SIZE": "3", "SIGHTFLEET_POOL_GRACE_S": "2",
                                  "SIGHTFLEET_IDLE_GRACE_S": "30"})
    assert (settings.warm_pool_size, settings.pool_idle_s) == (3, 2)
    assert Settings.from_env({}).warm_pool_size == 0                      # AWS: no pool until asked
    assert Settings(idle_grace_s=30, pool_grace_s=2).pool_idle_s == 30    # no pool: the grace as before
    assert Settings(idle_grace_s=5, pool_grace_s=20, warm_pool_size=1).pool_idle_s == 5   # never later
    assert LOCAL_DEFAULTS["SIGHTFLEET_WARM_POOL_SIZE"] == LOCAL_DEFAULTS["SIGHTFLEET_MAX_INSTANCES"]
    with pytest.raises(ConfigError, match="WARM_POOL_SIZE"):
        Settings.from_env({"SIGHTFLEET_WARM_POOL_SIZE": "-1"})
