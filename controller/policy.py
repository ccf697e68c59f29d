"""The scaling policy: a pure function from one observation of the stack to one decision.

No I/O and no clock reads here: the time comes in with the observation, so every rule can be
checked with a table of cases (tests/test_policy.py).

Rules, in the order they apply:
1. desired = ceil((visible + counted in-flight) / target backlog per instance), bounded by [min, max].
   In-flight messages count only while someone can be working on them: up to what live workers
   with a fresh heartbeat report holding. Messages held by a worker that died (or went silent)
   come back only when their visibility lapses; until then no new worker could take them, so they
   count only once that deadline is within start_lead_s (an instance started then is polling when
   they reappear). Without this, a worker that died holding a burst made the controller start
   pooled workers that found nothing, went back to the pool and were started again, until the
   visibility timeout ran out (benchmarks/fleet_sim.py, "dies mid-burst").
2. Safety net for unhealthy instances: a live (pending or running) instance whose worker has not
   sent a heartbeat for heartbeat_timeout_s (its launch, or its latest start from the pool, counts
   as a heartbeat, so booting, loading and resuming are covered), or whose worker says it retired
   itself, is terminated. Stopped (pooled) instances are never silent: they are not running.
3. Hard cap: healthy instances above max are terminated, idle or starting ones first.
4. Scale-out: need = desired - healthy. Stopped instances of the pool are started first (the most
   recently pooled first), then launch covers the rest, at most scale_out_step per tick (starting
   is cheap and not limited by the step). Pending and starting instances count as capacity, so
   consecutive ticks never overshoot the cap.
5. Scale-in is the workers' job (they go into the pool, or retire, after their idle grace). Only
   when the queue has been empty for idle_grace_s + a margin and the last launch is older than the
   cooldown does the controller terminate workers that report idle, down to desired.
6. The pool holds at most warm_pool_size instances: beyond it, the oldest pooled are terminated.
7. Paused by an operator: nothing is started or launched (the other rules still apply).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

BUSY, IDLE, RETIRED, POOLED = "busy", "idle", "terminated", "pooled"
LIVE, STOPPED = ("pending", "running"), ("stopping", "stopped")


@dataclass(frozen=True)
class PolicyConfig:
    """The knobs of the policy, all in instances, messages or seconds."""

    min_instances: int = 0
    max_instances: int = 19
    target_backlog: int = 10
    scale_out_step: int = 5
    scale_in_cooldown_s: float = 60.0
    heartbeat_timeout_s: float = 120.0
    idle_retire_after_s: float = 90.0
    warm_pool_size: int = 0
    visibility_timeout_s: float = 60.0
    # A holder whose last heartbeat is older than this is not working on what it holds.
    holder_stale_s: float = 30.0
    start_lead_s: float = 10.0

    @classmethod
    def from_settings(cls, settings, target_backlog: int | None = None) -> "PolicyConfig":
        """The policy's knobs from Settings; target_backlog overrides the configured one."""
        return cls(
            min_instances=settings.min_instances,
            max_instances=settings.max_instances,
            target_backlog=target_backlog or settings.target_backlog_per_instance,
            scale_out_step=settings.scale_out_step,
            scale_in_cooldown_s=settings.scale_in_cooldown_s,
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            idle_retire_after_s=settings.idle_grace_s + settings.idle_margin_s,
            warm_pool_size=settings.warm_pool_size,
            visibility_timeout_s=settings.visibility_timeout_s,
            holder_stale_s=3 * settings.worker_heartbeat_s,
        )


@dataclass(frozen=True)
class Member:
    """One instance of the stack (live or pooled), with what its worker last reported (if anything)."""

    id: str
    launched_at: float
    state: str = "running"
    last_heartbeat: float | None = None
    worker_state: str | None = None
    started_at: float | None = None   # its latest start from the pool
    pooled_at: float | None = None    # when it last went to the pool
    holding: int = 0                  # messages its worker last reported working on

    @property
    def up_since(self) -> float:
        return max(self.launched_at, self.started_at or self.launched_at)

    def silent_for(self, now: float) -> float:
        """Seconds since the last sign of life; the launch or latest start counts as one."""
        return now - max(self.up_since, self.last_heartbeat or self.up_since)


@dataclass(frozen=True)
class Observation:
    """Everything the policy may look at, taken at time `now` (epoch seconds)."""

    now: float
    visible: int
    in_flight: int
    members: tuple[Member, ...] = ()
    quiet_since: float | None = None  # since when the backlog has been zero; None: not known to be
    holders_known: bool = False       # members report what they hold: in-flight counts only with a holder
    paused: bool = False

    @property
    def backlog(self) -> int:
        return self.visible + self.in_flight


@dataclass(frozen=True)
class Decision:
    """Which pooled instances to start, how many to launch and which to terminate (each with a reason)."""

    desired: int
    launch: int = 0
    terminate: tuple[tuple[str, str], ...] = ()
    start: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.launch or self.terminate or self.start)

    @property
    def terminate_ids(self) -> list[str]:
        return [instance_id for instance_id, _ in self.terminate]


def target_backlog(acceptable_latency_s: float, time_per_image_s: float | None, fallback: int) -> int:
    """Messages one instance may hold: latency / time per image when both are known, else fallback."""
    if acceptable_latency_s > 0 and time_per_image_s and time_per_image_s > 0:
        return max(1, math.floor(acceptable_latency_s / time_per_image_s))
    return fallback


def desired_size(backlog: int, config: PolicyConfig) -> int:
    """ceil(backlog / target), bounded by [min, max]."""
    wanted = math.ceil(backlog / config.target_backlog) if backlog > 0 else 0
    return min(config.max_instances, max(config.min_instances, wanted))


def counted_backlog(obs: Observation, config: PolicyConfig) -> int:
    """Visible messages, plus the in-flight ones someone is working on or that reappear within start_lead_s."""
    if not obs.holders_known:
        return obs.backlog
    working = [m for m in obs.members if m.state in LIVE and m.silent_for(obs.now) <= config.holder_stale_s]
    held = min(obs.in_flight, sum(m.holding for m in working))
    orphans = obs.in_flight - held
    gone = [m for m in obs.members if m.holding and m not in working]
    # The latest a lost holder's messages reappear: its last sign of life plus one visibility timeout.
    due = [max(m.up_since, m.last_heartbeat or m.up_since) + config.visibility_timeout_s - obs.now for m in gone]
    soon = orphans > 0 and bool(due) and min(due) <= config.start_lead_s
    return obs.visible + held + (orphans if soon else 0)


def decide(obs: Observation, config: PolicyConfig) -> Decision:
    """The decision for one tick."""
    desired = desired_size(counted_backlog(obs, config), config)
    live = [m for m in obs.members if m.state in LIVE]
    pooled = [m for m in obs.members if m.state in STOPPED]
    unhealthy = _unhealthy(obs.now, live, config)
    gone = {instance_id for instance_id, _ in unhealthy}
    healthy = [m for m in live if m.id not in gone]
    over_cap = _over_cap(healthy, config)
    gone |= {instance_id for instance_id, _ in over_cap}
    healthy = [m for m in healthy if m.id not in gone]
    idle = _idle_surplus(obs, healthy, desired, config)
    need = 0 if obs.paused else max(0, desired - (len(healthy) - len(idle)))
    start = [m.id for m in _newest_pooled_first(pooled) if m.state == "stopped"][:need]
    launch = min(need - len(start), config.scale_out_step)
    shrink = _pool_excess([m for m in pooled if m.id not in start], config)
    return Decision(desired=desired, launch=launch, terminate=tuple(unhealthy + over_cap + idle + shrink),
                    start=tuple(start))


def _newest_pooled_first(pooled: list[Member]) -> list[Member]:
    """The most recently pooled first (an unknown pooling time counts as the launch time)."""
    return sorted(pooled, key=lambda m: (-(m.pooled_at or m.launched_at), m.id))


def _pool_excess(pooled: list[Member], config: PolicyConfig) -> list[tuple[str, str]]:
    """The oldest pooled instances beyond the pool's size."""
    extra = len(pooled) - config.warm_pool_size
    if extra <= 0:
        return []
    oldest = _newest_pooled_first(pooled)[::-1][:extra]
    return [(m.id, f"the warm pool holds at most {config.warm_pool_size}") for m in oldest]


def _unhealthy(now: float, live: list[Member], config: PolicyConfig) -> list[tuple[str, str]]:
    found = []
    for member in live:
        silent = member.silent_for(now)
        if member.worker_state == RETIRED:
            found.append((member.id, "worker retired but the instance is still up"))
        elif silent > config.heartbeat_timeout_s:
            found.append((member.id, f"no heartbeat for {silent:.0f} s"))
    return found


def _newest_quietest_first(members: list[Member]) -> list[Member]:
    """Busy workers last, then newest first: they hold no work and have loaded least."""
    return sorted(members, key=lambda m: (m.worker_state == BUSY, -m.launched_at, m.id))


def _over_cap(healthy: list[Member], config: PolicyConfig) -> list[tuple[str, str]]:
    extra = len(healthy) - config.max_instances
    if extra <= 0:
        return []
    return [(m.id, f"above the cap of {config.max_instances}") for m in _newest_quietest_first(healthy)[:extra]]


def _idle_surplus(obs: Observation, healthy: list[Member], desired: int,
                  config: PolicyConfig) -> list[tuple[str, str]]:
    """Idle workers that should have retired themselves by now, down to desired."""
    if obs.backlog > 0 or obs.quiet_since is None or len(healthy) <= desired:
        return []
    quiet_s = obs.now - obs.quiet_since
    last_launch = max(m.up_since for m in healthy)   # a start from the pool is a launch too
    if quiet_s < config.idle_retire_after_s or obs.now - last_launch < config.scale_in_cooldown_s:
        return []
    idle = [m for m in _newest_quietest_first(healthy) if m.worker_state == IDLE]
    surplus = len(healthy) - desired
    return [(m.id, f"idle with an empty queue for {quiet_s:.0f} s") for m in idle[:surplus]]
