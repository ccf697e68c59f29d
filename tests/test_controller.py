"""The control loop against a real moto server: launches, safety-net terminations, records, restarts.

No workers run here (tests/test_fleet_e2e.py has them): the queue is filled directly and
heartbeats are written the way workers write them, so each rule can be driven on purpose.
"""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from controller.loop import Controller
from controller.metrics import METRIC_NAMES
from controller.observe import Observer, iso
from sightfleet.contracts import SUCCEEDED, Job, new_image_id, queued_result, utc_now
from sightfleet.aws.dynamodb import DECISION_KIND as DECISION
from sightfleet.aws.session import client
from sightfleet.resources import Resources
from tests.support import REPO, wait_for

pytestmark = pytest.mark.slow  # controller ticks against the endpoint, its entry point as a process


class Clock:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def make_stack(settings_factory):
    def make(**changes):
        settings = settings_factory(**{"max_instances": 4, **changes})
        return settings, Resources.connect(settings)
    return make


def fill(resources, count: int) -> None:
    for n in range(count):
        resources.requests.send(f"job {n}")


def beat(resources, instance_id: str, state: str, at: float) -> None:
    """A heartbeat as app_tier/heartbeat.py writes it."""
    resources.fleet_log.put("worker", instance_id, {"instance_id": instance_id, "state": state,
                                                     "last_heartbeat": iso(at)})


def test_backlog_launches_tagged_workers_with_user_data_and_records_the_decision(make_stack):
    settings, resources = make_stack()
    fill(resources, 25)
    decision = Controller(resources, settings).tick()
    assert (decision.desired, decision.launch) == (3, 3)
    instances = resources.fleet.instances()
    assert len(instances) == 3
    assert all(i.tags["sightfleet:stack"] == settings.prefix and i.tags["sightfleet:role"] == "worker"
               for i in instances)
    ec2 = client(settings, "ec2")
    raw = ec2.describe_instance_attribute(InstanceId=instances[0].id, Attribute="userData")
    script = base64.b64decode(raw["UserData"]["Value"]).decode()
    assert f'SIGHTFLEET_PREFIX="{settings.prefix}"' in script and "AWS_SECRET" not in script
    [doc] = resources.fleet_log.all(DECISION)
    assert doc["backlog"] == 25 and doc["desired"] == 3 and sorted(doc["launched"]) == sorted(i.id for i in instances)


def test_metrics_are_published_in_the_stack_namespace(make_stack):
    settings, resources = make_stack()
    fill(resources, 5)
    Controller(resources, settings).tick()
    now = datetime.now(timezone.utc)
    series = resources.metrics.series(list(METRIC_NAMES), now - timedelta(minutes=5), now + timedelta(minutes=1))
    latest = {name: points[-1][1] for name, points in series.items() if points}
    assert latest == {"QueueVisible": 5, "QueueInFlight": 0, "DeadLetterVisible": 0, "BacklogPerInstance": 5,
                      "TargetBacklogPerInstance": 10, "DesiredInstances": 1, "RunningInstances": 0,
                      "PendingInstances": 0, "PooledInstances": 0, "SilentWorkersReplaced": 0}


def test_cap_holds_across_ticks_and_restarts(make_stack):
    settings, resources = make_stack(scale_out_step=3)
    fill(resources, 200)
    assert Controller(resources, settings).tick().launch == 3  # step limit
    assert Controller(resources, settings).tick().launch == 1  # a restarted controller counts what runs
    assert Controller(resources, settings).tick().launch == 0
    assert len(resources.fleet.instances()) == 4


def test_launches_not_listed_yet_still_count(make_stack):
    settings, resources = make_stack()
    fill(resources, 10)
    # As if the last tick launched i-0123456789abcdef0 and DescribeInstances lags behind.
    now = time.time()
    resources.fleet_log.put(DECISION, iso(now - 1), {"time": now - 1, "backlog": 10,
                                                     "launched": ["i-0123456789abcdef0"]})
    decision = Controller(resources, settings).tick()
    assert (decision.desired, decision.launch) == (1, 0)


def test_silent_worker_is_terminated_and_replaced(make_stack):
    settings, resources = make_stack(heartbeat_timeout_s=30)
    clock = Clock()
    controller = Controller(resources, settings, clock)
    fill(resources, 15)
    first = controller.tick()
    assert first.launch == 2
    quiet, chatty = (i.id for i in resources.fleet.instances())
    clock.offset = 40  # past the timeout since launch; one worker keeps reporting
    beat(resources, chatty, "busy", clock())
    decision = controller.tick()
    assert decision.terminate_ids == [quiet] and decision.launch == 1
    live = {i.id for i in resources.fleet.instances()}
    assert chatty in live and quiet not in live and len(live) == 2


def test_only_the_live_instances_heartbeats_are_read(make_stack):
    """The fleet table remembers a day of instances; each tick reads the beats of the live ones only."""
    settings, resources = make_stack()
    [live] = resources.fleet.launch(1, "#!/bin/bash\n")
    now = time.time()
    for n in range(150):   # more than one batch of keys' worth of retired instances
        beat(resources, f"i-gone{n:04}", "terminated", now - 3600)
    beat(resources, live, "busy", now)
    snapshot = Observer(resources, settings).observe(now)
    assert list(snapshot.heartbeats) == [live] and snapshot.heartbeats[live]["state"] == "busy"
    assert resources.fleet_log.get_many("worker", ["i-gone0007", "i-gone0149", "i-never"]).keys() == {
        "i-gone0007", "i-gone0149"}


def test_retired_worker_whose_instance_lingers_is_terminated(make_stack):
    settings, resources = make_stack()
    fill(resources, 1)
    controller = Controller(resources, settings)
    controller.tick()
    [instance] = resources.fleet.instances()
    beat(resources, instance.id, "terminated", time.time())
    assert controller.tick().terminate_ids == [instance.id]


def one_drained_instance(make_stack, **changes):
    """A stack whose one launched worker has done its only job and now idles."""
    settings, resources = make_stack(**changes)
    clock = Clock()
    fill(resources, 1)
    Controller(resources, settings, clock).tick()
    [instance] = resources.fleet.instances()
    resources.requests.delete(resources.requests.receive(1, 1)[0].receipt)
    return settings, resources, clock, instance


def test_idle_safety_net_after_grace_margin_and_cooldown_survives_a_restart(make_stack):
    settings, resources, clock, instance = one_drained_instance(
        make_stack, idle_grace_s=10, idle_margin_s=5, scale_in_cooldown_s=20)
    for offset in (1, 12, 18):  # quiet, but not yet for grace + margin (15 s) and within the cooldown
        clock.offset = offset
        beat(resources, instance.id, "idle", clock())
        assert not Controller(resources, settings, clock).tick().terminate
    clock.offset = 25  # quiet for 24 s, launched 25 s ago: a fresh controller reads that from the table
    beat(resources, instance.id, "idle", clock())
    decision = Controller(resources, settings, clock).tick()
    assert decision.terminate_ids == [instance.id] and "idle" in decision.terminate[0][1]


def test_busy_worker_is_left_alone_by_the_idle_safety_net(make_stack):
    settings, resources, clock, instance = one_drained_instance(
        make_stack, idle_grace_s=1, idle_margin_s=1, scale_in_cooldown_s=1)
    for offset in (1, 10):
        clock.offset = offset
        beat(resources, instance.id, "busy", clock())
        assert not Controller(resources, settings, clock).tick().terminate


def test_entry_point_scales_out_and_stops_on_sigterm(make_stack, tmp_path):
    settings, resources = make_stack(max_instances=2)
    env = {**os.environ, "AWS_ENDPOINT_URL": settings.endpoint_url, "SIGHTFLEET_PREFIX": settings.prefix,
           "SIGHTFLEET_MAX_INSTANCES": "2", "SIGHTFLEET_CONTROLLER_TICK_S": "0.5"}
    log_path = tmp_path / "controller.log"
    fill(resources, 30)
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "controller"], cwd=REPO, env=env, stderr=log_file)
    try:
        wait_for(lambda: len(resources.fleet.instances()) == 2, 30, what="two instances")
        time.sleep(1.5)  # a few more ticks: still two
        assert len(resources.fleet.instances()) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    text = log_path.read_text()
    assert code == 0, text
    assert "[controller]" in text and "desired 2: launched" in text and "controller stopped" in text
    assert len(resources.fleet_log.all(DECISION)) >= 3


def finished(resources, timings: dict) -> None:
    """A SUCCEEDED result with these timings, as a worker stores it."""
    job = Job(id=new_image_id(), album="a", filename="x.jpg", content_type="image/jpeg", submitted_at=utc_now(),
              size=1, inline_b64="")
    result = {**queued_result(job), "status": SUCCEEDED, "timings": timings, "completed_at": utc_now()}
    resources.results.finish(result)


@pytest.mark.parametrize("configured,timings,target", [
    (0.0, [], 10),                                       # nothing measured or configured: the fixed target
    (0.5, [], 4),                                        # configured 0.5 s per image: 2 s / 0.5 s
    (0.5, [{"total_ms": 100}, {"total_ms": 300}, {"total": 200}], 10),  # measured median 0.2 s wins
])
def test_target_follows_acceptable_latency_and_time_per_image(make_stack, configured, timings, target):
    settings, resources = make_stack(acceptable_latency_s=2.0, time_per_image_s=configured, max_instances=19)
    for timing in timings:
        finished(resources, timing)
    fill(resources, 40)
    decision = Controller(resources, settings).tick()
    assert decision.desired == -(-40 // target)
    [doc] = resources.fleet_log.all(DECISION)
    assert doc["target"] == target
