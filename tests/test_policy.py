"""Table-driven tests of the pure scaling policy (controller/policy.py)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from controller.policy import Decision, Member, Observation, PolicyConfig, decide, desired_size, target_backlog
from sightfleet.config import Settings

NOW = 100_000.0
BASE = PolicyConfig(min_instances=0, max_instances=4, target_backlog=10, scale_out_step=5,
                    scale_in_cooldown_s=60, heartbeat_timeout_s=120, idle_retire_after_s=90)


def m(instance_id: str, age: float = 300, heartbeat_age: float | None = 5, worker: str | None = "busy",
      state: str = "running") -> Member:
    """A member launched `age` s ago whose last heartbeat is `heartbeat_age` s old (None: never)."""
    heartbeat = None if heartbeat_age is None else NOW - heartbeat_age
    return Member(instance_id, NOW - age, state, heartbeat, worker)


def idle(instance_id: str, age: float = 300) -> Member:
    return m(instance_id, age=age, worker="idle")


# name, config changes, visible, in_flight, members, quiet for (s; None = unknown), desired, launch, terminated ids
CASES = [
    ("empty queue, empty fleet", {}, 0, 0, [], 600, 0, 0, []),
    ("one message wakes one instance", {}, 1, 0, [], None, 1, 1, []),
    ("exactly at target", {}, 10, 0, [], None, 1, 1, []),
    ("one over target", {}, 11, 0, [], None, 2, 2, []),
    ("40 jobs, cap 4", {}, 40, 0, [], None, 4, 4, []),
    ("burst over the cap is bounded", {}, 500, 0, [], None, 4, 4, []),
    ("in-flight only keeps the fleet", {}, 0, 20, [m("a"), m("b")], None, 2, 0, []),
    ("pending instances count as capacity", {}, 40, 0,
     [m("a", age=1, heartbeat_age=None, worker=None, state="pending"),
      m("b", age=1, heartbeat_age=None, worker=None, state="pending")], None, 4, 2, []),
    ("full fleet of pending: no overshoot", {}, 40, 0,
     [m(i, age=2, heartbeat_age=None, worker=None, state="pending") for i in "abcd"], None, 4, 0, []),
    ("scale-out step limit", {"max_instances": 19, "scale_out_step": 3}, 190, 0, [], None, 19, 3, []),
    ("step limit counts what is already there", {"max_instances": 19, "scale_out_step": 3}, 190, 0,
     [m(i) for i in "abcdefgh"], None, 19, 3, []),
    ("min above zero with an empty queue", {"min_instances": 2}, 0, 0, [], 600, 2, 2, []),
    ("min above zero is kept by the idle safety net", {"min_instances": 1}, 0, 0,
     [idle("a", 900), idle("b", 800)], 600, 1, 0, ["b"]),
    ("above the cap: newest idle one goes first", {"max_instances": 2}, 100, 0,
     [m("a", 500), idle("b", 300), m("c", 100)], None, 2, 0, ["b"]),
    ("above the cap: busy workers go last", {"max_instances": 1}, 100, 0,
     [m("a", 500), m("b", 300), idle("c", 100)], None, 1, 0, ["c", "b"]),
    ("silent worker replaced", {}, 30, 0,
     [m("a"), m("b", heartbeat_age=200), m("c")], None, 3, 1, ["b"]),
    ("never-reporting instance past the timeout", {}, 10, 0,
     [m("a", age=130, heartbeat_age=None, worker=None)], None, 1, 1, ["a"]),
    ("just launched, still loading: launch time is its heartbeat", {}, 10, 0,
     [m("a", age=100, heartbeat_age=None, worker=None)], None, 1, 0, []),
    ("retired worker whose instance lingers", {}, 0, 0, [m("a", worker="terminated")], 600, 0, 0, ["a"]),
    ("idle workers retire themselves first (quiet shorter than grace+margin)", {}, 0, 0,
     [idle("a"), idle("b")], 60, 0, 0, []),
    ("idle safety net after grace+margin and cooldown", {}, 0, 0, [idle("a"), idle("b", 200)], 100, 0, 0,
     ["b", "a"]),
    ("idle safety net waits for the cooldown after a launch", {}, 0, 0,
     [idle("a", 300), idle("b", 30)], 600, 0, 0, []),
    ("quiet time unknown (restart): no idle scale-in", {}, 0, 0, [idle("a")], None, 0, 0, []),
    ("busy workers are never taken by the idle safety net", {}, 0, 0,
     [m("a", worker="busy"), idle("b")], 600, 0, 0, ["b"]),
    ("backlog below fleet: workers retire themselves, no termination", {}, 5, 0,
     [idle("a"), idle("b"), m("c")], None, 1, 0, []),
]


@pytest.mark.parametrize("name,changes,visible,in_flight,members,quiet_s,desired,launch,terminated",
                         CASES, ids=[case[0] for case in CASES])
def test_policy_table(name, changes, visible, in_flight, members, quiet_s, desired, launch, terminated):
    config = replace(BASE, **changes)
    quiet_since = None if quiet_s is None else NOW - quiet_s
    decision = decide(Observation(NOW, visible, in_flight, tuple(members), quiet_since), config)
    assert (decision.desired, decision.launch, decision.terminate_ids) == (desired, launch, terminated)


def pooled(instance_id: str, pooled_age: float, state: str = "stopped", age: float = 3600) -> Member:
    """A worker that went to the pool `pooled_age` s ago; its last heartbeat is as old (it stopped beating)."""
    return Member(instance_id, NOW - age, state, NOW - pooled_age, "pooled", pooled_at=NOW - pooled_age)


def resumed(instance_id: str, started_age: float, heartbeat_age: float = 900, state: str = "running") -> Member:
    """A worker started from the pool `started_age` s ago that has not beaten since it went there."""
    return Member(instance_id, NOW - 3600, state, NOW - heartbeat_age, "pooled", started_at=NOW - started_age,
                  pooled_at=NOW - heartbeat_age)


POOL = {"warm_pool_size": 3}
# name, config changes, visible, members, desired, started ids, launch, terminated ids
POOL_CASES = [
    ("start before launch: the pool first, launches for the rest", POOL, 40,
     [pooled("p1", 100), pooled("p2", 50)], 4, ["p2", "p1"], 2, []),
    ("the most recently pooled is started first", POOL, 15,
     [pooled("old", 900), pooled("new", 10), pooled("mid", 300)], 2, ["new", "mid"], 0, []),
    ("never over the cap: running ones count", POOL, 100,
     [m("a"), m("b"), pooled("p1", 100), pooled("p2", 90), pooled("p3", 80)], 4, ["p3", "p2"], 0, []),
    ("at the cap nothing is started", POOL, 100,
     [m(i) for i in "abcd"] + [pooled("p1", 100)], 4, [], 0, []),
    ("a starting instance counts as capacity (no second start, no launch)", POOL, 10,
     [resumed("r", 1, state="pending")], 1, [], 0, []),
    ("stopping instances cannot be started yet: launch instead", POOL, 10,
     [pooled("s", 1, state="stopping")], 1, [], 1, []),
    ("the scale-out step limits launches, not starts", {**POOL, "scale_out_step": 1}, 40,
     [pooled("p1", 30), pooled("p2", 20), pooled("p3", 10)], 4, ["p3", "p2", "p1"], 1, []),
    ("stopped instances are never reaped as silent", POOL, 0,
     [pooled("p1", 5000), pooled("p2", 100_000)], 0, [], 0, []),
    ("the heartbeat timeout runs from the start again", POOL, 10,
     [resumed("r", 30, heartbeat_age=5000)], 1, [], 0, []),
    ("started long ago and silent since: replaced", POOL, 10,
     [resumed("r", 200, heartbeat_age=5000)], 1, [], 1, ["r"]),
    ("pool size respected: the oldest pooled are terminated first", {"warm_pool_size": 2}, 0,
     [pooled("mid", 300), pooled("old", 900), pooled("new", 10), pooled("older", 600)], 0, [], 0,
     ["old", "older"]),
    ("stopping ones count toward the pool", {"warm_pool_size": 1}, 0,
     [pooled("old", 900), pooled("s", 1, state="stopping")], 0, [], 0, ["old"]),
    ("no pool (size 0): stopped workers are terminated", {"warm_pool_size": 0}, 0,
     [pooled("p1", 10)], 0, [], 0, ["p1"]),
    ("what is started leaves the pool; the rest is trimmed", {"warm_pool_size": 1}, 10,
     [pooled("old", 900), pooled("mid", 300), pooled("new", 10)], 1, ["new"], 0, ["old"]),
]


@pytest.mark.parametrize("name,changes,visible,members,desired,started,launch,terminated",
                         POOL_CASES, ids=[case[0] for case in POOL_CASES])
def test_pool_table(name, changes, visible, members, desired, started, launch, terminated):
    decision = decide(Observation(NOW, visible, 0, tuple(members), None), replace(BASE, **changes))
    assert (decision.desired, list(decision.start), decision.launch, decision.terminate_ids) == \
        (desired, started, launch, terminated)


@pytest.mark.parametrize("pool", [[], [pooled("p", 5)], [pooled(f"p{n}", n) for n in range(1, 6)]])
@pytest.mark.parametrize("running", [[], [m("a")], [m(i) for i in "abc"]])
@pytest.mark.parametrize("backlog", [0, 1, 9, 10, 31, 1000])
def test_live_fleet_after_decision_stays_within_bounds_with_a_pool(pool, running, backlog):
    config = replace(BASE, min_instances=1, max_instances=3, warm_pool_size=2)
    decision = decide(Observation(NOW, backlog, 0, tuple(running + pool), None), config)
    live_after = len(running) - len(set(decision.terminate_ids) - {p.id for p in pool}) \
        + len(decision.start) + decision.launch
    pool_after = len(pool) - len(decision.start) - len(set(decision.terminate_ids) & {p.id for p in pool})
    assert config.min_instances <= live_after <= config.max_instances
    assert 0 <= pool_after <= config.warm_pool_size
    assert not set(decision.start) & set(decision.terminate_ids)


@pytest.mark.parametrize("members", [[], [m("a")], [m(i) for i in "abc"]])
@pytest.mark.parametrize("backlog", [0, 1, 9, 10, 31, 1000])
def test_fleet_after_decision_stays_within_bounds(members, backlog):
    config = replace(BASE, min_instances=1, max_instances=3)
    decision = decide(Observation(NOW, backlog, 0, tuple(members), None), config)
    after = len(members) - len(decision.terminate) + decision.launch
    assert config.min_instances <= after <= config.max_instances


def test_every_termination_has_a_reason():
    members = (m("a", age=900, heartbeat_age=500), m("b", worker="terminated"))
    decision = decide(Observation(NOW, 0, 0, members, None), BASE)
    reasons = dict(decision.terminate)
    assert "no heartbeat for 500 s" in reasons["a"] and "retired" in reasons["b"]
    assert decision.changes and not Decision(desired=0).changes


@pytest.mark.parametrize("latency,per_image,fallback,expected", [
    (0, 0.1, 10, 10),       # latency target off: configured target
    (10, None, 10, 10),     # nothing measured or configured yet
    (10, 0.1, 10, 100),     # 10 s of work at 0.1 s per image
    (10, 0.3, 10, 33),      # rounded down, so latency is not exceeded
    (1, 5.0, 10, 1),        # slower than the latency: one image per instance at least
])
def test_target_backlog(latency, per_image, fallback, expected):
    assert target_backlog(latency, per_image, fallback) == expected


def test_config_from_settings_adds_the_margin_to_the_grace():
    settings = Settings(min_instances=1, max_instances=7, idle_grace_s=8, idle_margin_s=4, scale_out_step=2)
    config = PolicyConfig.from_settings(settings, target_backlog=25)
    assert (config.min_instances, config.max_instances, config.idle_retire_after_s) == (1, 7, 12)
    assert (config.target_backlog, config.scale_out_step) == (25, 2)
    assert desired_size(26, config) == 2
    assert PolicyConfig.from_settings(settings).target_backlog == settings.target_backlog_per_instance
    assert PolicyConfig.from_settings(settings.with_changes(warm_pool_size=4)).warm_pool_size == 4


def holder(instance_id: str, holding: int, heartbeat_age: float = 5, state: str = "running",
           worker: str = "busy") -> Member:
    """A member whose worker last reported holding `holding` messages, heartbeat_age s ago."""
    return Member(instance_id, NOW - 600, state, NOW - heartbeat_age, worker, holding=holding)


def resumed_idle(instance_id: str, seconds_ago: float) -> Member:
    """Started from the pool seconds_ago, and found nothing: idle."""
    return Member(instance_id, NOW - 5000, "running", NOW - 1, "idle", started_at=NOW - seconds_ago,
                  pooled_at=NOW - 100)


CHURN = {"warm_pool_size": 2, "max_instances": 2, "visibility_timeout_s": 60, "holder_stale_s": 30,
         "start_lead_s": 10}
# name, visible, in_flight, members, desired, started, launch (members report what they hold)
HOLDER_CASES = [
    ("in flight with a live holder counts (as before)", 0, 15, [holder("a", 15)], 2, [], 1),
    ("in flight with no live holder (it died 5 s ago): nothing is started", 0, 15,
     [holder("dead", 15, heartbeat_age=5, state="terminated"), pooled("p1", 100), pooled("p2", 90)], 0, [], 0),
    ("a silent holder still listed running is not working on them either", 0, 15,
     [holder("hung", 15, heartbeat_age=45), pooled("p1", 100)], 0, [], 0),
    ("a worker that just resumed and found nothing: the orphans start nobody else", 0, 15,
     [holder("dead", 15, heartbeat_age=20, state="terminated"), resumed_idle("r", 3), pooled("p2", 90)], 0, [], 0),
    ("the visibility deadline approaching: the pool is started for them", 0, 15,
     [holder("dead", 15, heartbeat_age=55, state="terminated"), pooled("p1", 100), pooled("p2", 90)],
     2, ["p2", "p1"], 0),
    ("visible work still starts the pool beside orphans", 12, 15,
     [holder("dead", 15, heartbeat_age=5, state="terminated"), pooled("p1", 100), pooled("p2", 90)],
     2, ["p2", "p1"], 0),
    ("held by the living, some orphaned: only the held count", 0, 30,
     [holder("a", 10), holder("dead", 20, heartbeat_age=5, state="terminated"), pooled("p1", 100)], 1, [], 0),
    ("in flight with no holder known at all waits for the messages to reappear", 0, 15, [pooled("p1", 100)],
     0, [], 0),
]


@pytest.mark.parametrize("name,visible,in_flight,members,desired,started,launch", HOLDER_CASES,
                         ids=[case[0] for case in HOLDER_CASES])
def test_in_flight_counts_only_with_someone_to_work_on_it(name, visible, in_flight, members, desired, started,
                                                          launch):
    obs = Observation(NOW, visible, in_flight, tuple(members), None, holders_known=True)
    decision = decide(obs, replace(BASE, **CHURN))
    assert (decision.desired, list(decision.start), decision.launch) == (desired, started, launch)


def test_without_holder_reports_in_flight_counts_as_before():
    obs = Observation(NOW, 0, 15, (pooled("p1", 100), pooled("p2", 90)), None)
    assert decide(obs, replace(BASE, **CHURN)).start == ("p2", "p1")


@pytest.mark.parametrize("members", [[], [pooled("p1", 100)], [m("a")]])
def test_paused_starts_and_launches_nothing_but_still_reaps(members):
    silent = m("silent", heartbeat_age=5000)
    obs = Observation(NOW, 50, 0, tuple(members + [silent]), None, paused=True)
    decision = decide(obs, replace(BASE, warm_pool_size=2))
    assert (decision.launch, decision.start, decision.terminate_ids) == (0, (), ["silent"])
