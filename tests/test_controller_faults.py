"""Every storage call of a controller tick fails in turn (in-memory resources): the tick survives it.

The control loop must never stop: a call that fails costs at most that tick's part that needs it,
the decision says what failed, and the next tick carries on as if nothing happened.
"""
from __future__ import annotations

import json
import threading

import pytest

from controller.loop import Controller
from sightfleet.config import Settings
from sightfleet.contracts import Job, Result, new_image_id, utc_now
from sightfleet.errors import Unavailable
from sightfleet.interfaces import HEARTBEAT_KIND
from sightfleet.memory import memory_resources

# Every call a tick can make, and what a failure of it costs.
TICK_CALLS = {
    "requests.counts": "skipped",          # the stack cannot be read: no decision this tick
    "dead_letters.counts": "skipped",
    "fleet.instances": "skipped",
    "fleet_log.all": "skipped",            # recent decisions
    "fleet_log.get_many": "skipped",       # heartbeats
    "results.completed_since": "decided",  # the time per image falls back to the configured one
    "fleet.launch": "error recorded",
    "fleet_log.put": "decided",            # the decision record is lost, the metrics still go out
    "metrics.put": "decided",
    "dead_letters.receive": "decided",     # the dead-letter sweep waits for the next tick
    "results.get": "decided",
    "results.finish": "decided",
}


@pytest.fixture
def stack():
    settings = Settings(prefix="mem", max_instances=4, acceptable_latency_s=5, time_per_image_s=0.5)
    resources, faults = memory_resources(settings)
    for n in range(25):
        resources.requests.send(f"job {n}")
    dead = Job(id=new_image_id(), album="default", filename="x.jpg", content_type="image/jpeg",
               submitted_at=utc_now(), size=1, inline_b64="AAAA")
    resources.results.create(Result.queued(dead).to_dict())
    resources.dead_letters.send(dead.to_message())
    return settings, resources, faults, dead.id


@pytest.mark.parametrize("call", sorted(TICK_CALLS))
def test_a_failed_call_costs_at_most_its_tick(stack, call):
    settings, resources, faults, dead_id = stack
    # The heartbeats' read, not the operators' control item's (read first each tick, and failing open).
    heartbeats_only = (lambda kind, keys: kind == HEARTBEAT_KIND) if call == "fleet_log.get_many" else None
    faults.fail(call, times=1, when=heartbeats_only)
    controller = Controller(resources, settings)
    decision = controller.tick()
    assert faults.calls[call] >= 1, f"{call} was never made"
    expected = TICK_CALLS[call]
    launched = [i for i in resources.fleet.states.values() if i.state == "running"]
    if expected == "skipped":
        assert decision is None and launched == []
    else:
        assert decision is not None and decision.launch == 3
        assert len(launched) == (0 if expected == "error recorded" else 3)
    if call != "fleet_log.put":
        [record] = resources.fleet_log.all("decision") or [None]
        assert record is None or (record["errors"] != []) == (expected == "error recorded")
    # The next tick carries on: the fleet reaches its size and the dead letter is marked.
    controller.tick()
    assert len([i for i in resources.fleet.states.values() if i.state == "running"]) == 3
    assert resources.results.get(dead_id)["status"] == "FAILED"


def test_a_failed_terminate_is_recorded_and_retried_next_tick():
    settings = Settings(prefix="mem", max_instances=4, heartbeat_timeout_s=30)
    resources, faults = memory_resources(settings)
    from datetime import datetime, timedelta, timezone
    resources.fleet.add("i-silent", launched_at=datetime.now(timezone.utc) - timedelta(minutes=5))
    resources.requests.send("job")
    faults.fail("fleet.terminate", times=1)
    controller = Controller(resources, settings)
    controller.tick()
    [record] = resources.fleet_log.all("decision")
    assert any("terminate" in error for error in record["errors"])
    assert resources.fleet.states["i-silent"].state == "running"
    controller.tick()
    assert resources.fleet.states["i-silent"].state == "terminated"


def test_the_loop_outlives_a_tick_that_raises_anything(stack, monkeypatch):
    settings, resources, faults, _ = stack
    settings = settings.with_changes(controller_tick_s=0.05)
    controller = Controller(resources, settings)
    calls = []
    real_tick = controller.tick

    def tick():
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug in one tick")
        return real_tick()

    monkeypatch.setattr(controller, "tick", tick)
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    try:
        for _ in range(100):
            if len(calls) >= 3:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(calls) >= 3 and not thread.is_alive()
    assert len([i for i in resources.fleet.states.values() if i.state == "running"]) == 3


def test_every_fault_at_once_still_leaves_a_running_controller(stack):
    settings, resources, faults, _ = stack
    for call in TICK_CALLS:
        faults.fail(call, Unavailable)
    controller = Controller(resources, settings)
    assert controller.tick() is None
    faults.clear()
    assert controller.tick().launch == 3
    assert json.loads(json.dumps(resources.fleet_log.all("decision")))   # recorded again


# A tick with a warm pool: starting pooled workers and trimming the pool, and what a failure costs.
POOL_TICK_CALLS = ["fleet.start", "fleet.terminate"]


@pytest.mark.parametrize("call", POOL_TICK_CALLS)
def test_a_failed_start_or_trim_is_recorded_and_done_next_tick(call):
    from datetime import datetime, timedelta, timezone
    settings = Settings(prefix="mem", max_instances=4, warm_pool_size=1)
    resources, faults = memory_resources(settings)
    long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    for n, pooled_min in enumerate((40, 30, 20, 10)):   # four pooled: after two starts, one too many
        resources.fleet.add(f"i-pooled{n}", "stopped", long_ago, long_ago + timedelta(minutes=60 - pooled_min))
    for n in range(15):   # desired 2: the two most recently pooled are started, the oldest trimmed
        resources.requests.send(f"job {n}")
    faults.fail(call, times=1)
    controller = Controller(resources, settings)
    first = controller.tick()
    assert faults.calls[call] == 1
    assert (first.start, first.terminate_ids, first.launch) == (("i-pooled3", "i-pooled2"), ["i-pooled0"], 0)
    [record] = resources.fleet_log.all("decision")
    assert any(error.startswith(call.split(".")[1]) for error in record["errors"]), record["errors"]
    controller.tick()
    states = {i: resources.fleet.states[i].state for i in ("i-pooled0", "i-pooled1", "i-pooled2", "i-pooled3")}
    assert states == {"i-pooled0": "terminated", "i-pooled1": "stopped", "i-pooled2": "running",
                      "i-pooled3": "running"}
