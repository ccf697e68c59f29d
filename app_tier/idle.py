"""The worker's idle rule: a pure function from how long it has been idle, and what the fleet looks like,
to what it does next (keep polling, go into the warm pool, or retire).

No I/O and no clock here, so the rule is checked with a table of cases (tests/test_idle.py) and the
fleet simulator (benchmarks/fleet_sim.py) runs the very rule the worker runs.

- Nothing happens before pool_idle_s of idleness, while messages are held, or where the worker may
  not terminate its instance.
- The oldest min_instances live instances keep the floor: idle workers leaving together still
  leave them running.
- Into the pool while it has room (several idle workers may see the same room: the controller trims
  the excess); otherwise retire once idle for idle_grace_s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

POOL, RETIRE = "pooled", "retire"


@dataclass(frozen=True)
class IdleRules:
    """The knobs of the idle rule, in seconds and instances."""

    pool_idle_s: float
    idle_grace_s: float
    warm_pool_size: int = 0
    min_instances: int = 0

    @classmethod
    def from_settings(cls, settings) -> "IdleRules":
        """The rule's knobs from Settings."""
        return cls(pool_idle_s=settings.pool_idle_s, idle_grace_s=settings.idle_grace_s,
                   warm_pool_size=settings.warm_pool_size, min_instances=settings.min_instances)


def needs_fleet(rules: IdleRules, idle_s: float, holds_messages: bool, can_terminate: bool) -> bool:
    """Whether the fleet is worth listing: only then can the worker leave."""
    return idle_s >= rules.pool_idle_s and can_terminate and not holds_messages


def idle_step(rules: IdleRules, idle_s: float, live_rank: int | None, pooled: int,
              holds_messages: bool = False, can_terminate: bool = True) -> str | None:
    """POOL, RETIRE or None (keep polling).

    live_rank: this instance's place among the stack's live instances, oldest first (None: not listed
    live); pooled: how many of the stack's instances are stopped or stopping in the pool.
    """
    if not needs_fleet(rules, idle_s, holds_messages, can_terminate):
        return None
    if live_rank is None or live_rank < rules.min_instances:
        return None
    if pooled < rules.warm_pool_size:
        return POOL
    return RETIRE if idle_s >= rules.idle_grace_s else None


def idle_left_s(rules: IdleRules, idle_s: float) -> float:
    """Seconds until the next idle deadline: the pool's grace, then the retirement grace."""
    deadline = rules.pool_idle_s if idle_s < rules.pool_idle_s else rules.idle_grace_s
    return deadline - idle_s


def poll_wait_s(idle_left: float, receive_wait_s: int) -> int:
    """Seconds of the next long poll: whole seconds (SQS's unit), 1 to receive_wait_s, ending at the next
    idle deadline or just past it, never short of it (a poll that ends early costs another second's poll)."""
    return int(max(1, min(receive_wait_s, math.ceil(idle_left))))
