"""Table tests of the worker's idle rule (app_tier/idle.py): keep polling, into the pool, or retire."""
from __future__ import annotations

import pytest

from app_tier.idle import POOL, RETIRE, IdleRules, idle_left_s, idle_step, needs_fleet, poll_wait_s
from sightfleet.config import Settings

RULES = IdleRules(pool_idle_s=2, idle_grace_s=6, warm_pool_size=2, min_instances=0)

# name, rule changes, idle s, live rank, pooled, holds messages, can terminate, expected
CASES = [
    ("busy a moment ago", {}, 1.9, 0, 0, False, True, None),
    ("pool grace reached, pool has room", {}, 2.0, 0, 0, False, True, POOL),
    ("pool has room for the last one", {}, 3, 3, 1, False, True, POOL),
    ("pool full, retirement grace not reached", {}, 5.9, 0, 2, False, True, None),
    ("pool full, retirement grace reached", {}, 6.0, 0, 2, False, True, RETIRE),
    ("pool over-full (others raced in) retires", {}, 10, 0, 3, False, True, RETIRE),
    ("no pool: the grace alone", {"warm_pool_size": 0, "pool_idle_s": 6}, 6, 0, 0, False, True, RETIRE),
    ("no pool, before the grace", {"warm_pool_size": 0, "pool_idle_s": 6}, 5, 0, 0, False, True, None),
    ("holding messages never leaves", {}, 100, 0, 0, True, True, None),
    ("may not terminate its instance", {}, 100, 0, 0, False, False, None),
    ("among the oldest min instances keeps the floor", {"min_instances": 2}, 100, 1, 0, False, True, None),
    ("beyond the floor leaves", {"min_instances": 2}, 100, 2, 0, False, True, POOL),
    ("not listed live (being stopped already)", {}, 100, None, 0, False, True, None),
]


@pytest.mark.parametrize("name, changes, idle_s, rank, pooled, holds, can_terminate, expected", CASES,
                         ids=[c[0] for c in CASES])
def test_idle_table(name, changes, idle_s, rank, pooled, holds, can_terminate, expected):
    rules = IdleRules(**{**RULES.__dict__, **changes})
    assert idle_step(rules, idle_s, rank, pooled, holds, can_terminate) == expected


@pytest.mark.parametrize("idle_s, left", [(0, 2), (1.5, 0.5), (2, 4), (5, 1), (7, -1)])
def test_idle_left_counts_to_the_next_deadline(idle_s, left):
    assert idle_left_s(RULES, idle_s) == pytest.approx(left)


@pytest.mark.parametrize("idle_left, expected", [
    (2.0, 2),       # a deadline in whole seconds: the poll ends on it (a simulator's clock, no time passed)
    (1.9999, 2),    # a moment after the last batch, as a real worker computes it: the same poll
    (0.4, 1),       # never short of the deadline, whole seconds
    (0.0, 1), (-3.0, 1),   # at or past it (a refused pool or retirement): one-second polls
    (45.0, 20),     # at most SQS's longest wait
])
def test_a_poll_ends_at_the_next_idle_deadline_or_just_past_it(idle_left, expected):
    assert poll_wait_s(idle_left, 20) == expected


def test_fleet_is_listed_only_when_the_worker_could_leave():
    assert not needs_fleet(RULES, 1, False, True)
    assert not needs_fleet(RULES, 9, True, True)
    assert not needs_fleet(RULES, 9, False, False)
    assert needs_fleet(RULES, 2, False, True)


def test_rules_from_settings():
    rules = IdleRules.from_settings(Settings(idle_grace_s=30, pool_grace_s=3, warm_pool_size=4, min_instances=1))
    assert rules == IdleRules(pool_idle_s=3, idle_grace_s=30, warm_pool_size=4, min_instances=1)
    assert IdleRules.from_settings(Settings(idle_grace_s=30, pool_grace_s=3)).pool_idle_s == 30   # no pool


def test_with_a_pool_the_default_grace_into_it_is_short():
    # A resume is cheap and idling is not (benchmarks/fleet_sim.py): 2 s, never past the idle grace.
    assert IdleRules.from_settings(Settings(warm_pool_size=3)).pool_idle_s == 2
    assert IdleRules.from_settings(Settings(warm_pool_size=3, idle_grace_s=1)).pool_idle_s == 1
    assert IdleRules.from_settings(Settings(warm_pool_size=3, pool_grace_s=0)).pool_idle_s == 60   # 0: the grace
