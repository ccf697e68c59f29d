"""What the controller reads each tick: queue counts, the fleet from EC2 tags, heartbeats, history.

Nothing is kept in memory between ticks except a short cache of the measured time per image
and the recent decisions already read (each tick reads only newer ones): the fleet comes from
EC2, heartbeats and past decisions from the fleet table, so a restarted controller sees exactly
what the old one saw.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controller.policy import Member, Observation
from sightfleet.aws.dynamodb import DecisionTail
from sightfleet.contracts import epoch, iso
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import ALL_STATES, HEARTBEAT_KIND, LIVE_STATES, POOLED_STATES, Instance

if TYPE_CHECKING:
    from sightfleet.config import Settings
    from sightfleet.resources import Resources

log = logging.getLogger(__name__)
# DescribeInstances is eventually consistent: an instance launched this long ago that it does
# not list yet still counts as pending, so two ticks never launch the same capacity twice.
LAUNCH_VISIBILITY_S = 60.0
# Results of this window give the measured time per image; re-read at most this often.
TIMING_WINDOW_S = 600.0
TIMING_CACHE_S = 30.0


@dataclass(frozen=True)
class Snapshot:
    """One tick's readings, kept raw enough for the decision record and the metrics."""

    now: float
    visible: int
    in_flight: int
    dead_letters: int
    instances: tuple[Instance, ...]
    heartbeats: dict = field(default_factory=dict)
    quiet_since: float | None = None
    time_per_image_s: float | None = None
    unlisted_launches: dict = field(default_factory=dict)  # instance id -> launch time
    pooled: tuple[Instance, ...] = ()   # stopping or stopped: the warm pool
    ended: tuple[Instance, ...] = ()    # terminated or shutting down, with a heartbeat saying it held work
    paused: bool = False

    @property
    def backlog(self) -> int:
        return self.visible + self.in_flight

    def count(self, state: str) -> int:
        return sum(1 for i in self.instances if i.state == state) + (
            len(self.unlisted_launches) if state == "pending" else 0)

    def observation(self) -> Observation:
        """The policy's view: one member per live instance, with its worker's last heartbeat."""
        members = [self._member(i) for i in self.instances + self.pooled + self.ended]
        members += [Member(i, launched_at, "pending") for i, launched_at in self.unlisted_launches.items()]
        return Observation(self.now, self.visible, self.in_flight, tuple(members), self.quiet_since,
                           holders_known=True, paused=self.paused)

    def _member(self, instance: Instance) -> Member:
        beat = self.heartbeats.get(instance.id) or {}
        # An unreadable heartbeat time counts as none: the launch time then stands for it.
        return Member(instance.id, instance.launched_at.timestamp(), member_state(instance),
                      epoch(beat.get("last_heartbeat")), beat.get("state"), _timestamp(instance.started_at),
                      _timestamp(instance.pooled_at), holding(beat))


class Observer:
    """Reads one Snapshot from the stack's resources."""

    def __init__(self, resources: Resources, settings: Settings):
        self._resources = resources
        self._settings = settings
        # Decisions this far back cover the idle safety net's quiet period and recent launches.
        self._decisions = DecisionTail(resources.fleet_log, max(
            LAUNCH_VISIBILITY_S, settings.idle_grace_s + settings.idle_margin_s + 10 * settings.controller_tick_s))
        self._timing: tuple[float, float | None] = (float("-inf"), None)

    def observe(self, now: float, paused: bool = False) -> Snapshot:
        counts = self._resources.requests.counts()
        dead = self._resources.dead_letters.counts()
        every = self._resources.fleet.instances(states=ALL_STATES)
        live = tuple(i for i in every if i.state in LIVE_STATES)
        pooled = tuple(i for i in every if i.state in POOLED_STATES)
        decisions = self._decisions.read(now)
        # Only the beats of instances EC2 still lists (about an hour): the table remembers a day of them.
        # Ended ones tell whose messages are still in flight with nobody working on them.
        heartbeats = self._resources.fleet_log.get_many(HEARTBEAT_KIND, [i.id for i in every if i.state not in POOLED_STATES])
        ended = tuple(i for i in every if i.state not in LIVE_STATES + POOLED_STATES and holding(heartbeats.get(i.id)))
        unlisted = _unlisted_launches(decisions, {i.id for i in every}, now)
        backlog = counts["visible"] + counts["in_flight"]
        # Dead letters the sweep is looking at are invisible for a while: they still count.
        dead_letters = dead["visible"] + dead["in_flight"]
        return Snapshot(now, counts["visible"], counts["in_flight"], dead_letters, live, heartbeats,
                        quiet_since(decisions, backlog, now), self._time_per_image(now), unlisted, pooled,
                        ended, paused)

    def _time_per_image(self, now: float) -> float | None:
        """Median seconds per image over recent results, else the configured default, else None."""
        if self._settings.acceptable_latency_s <= 0:
            return None
        read_at, measured = self._timing
        if now - read_at >= TIMING_CACHE_S:
            measured = self._measure(now)
            self._timing = (now, measured)
        return measured or self._settings.time_per_image_s or None

    def _measure(self, now: float) -> float | None:
        try:
            results = self._resources.results.completed_since(iso(now - TIMING_WINDOW_S))
        except SightfleetError as exc:
            log.warning("cannot read recent results for the time per image: %s", exc)
            return None
        return median_service_s(results)


def holding(beat: dict | None) -> int:
    """How many messages a heartbeat says its worker is working on."""
    current = (beat or {}).get("current")
    return len(current) if isinstance(current, list) else 0


def member_state(instance: Instance) -> str:
    """Its EC2 state, except that one listed stopped after a later start is starting: DescribeInstances lags."""
    started, pooled = instance.started_at, instance.pooled_at
    if instance.state in POOLED_STATES and started and pooled and started > pooled:
        return "pending"
    return instance.state


def _timestamp(moment) -> float | None:
    return None if moment is None else moment.timestamp()


def service_ms(result: dict) -> float | None:
    """One result's service time in ms (timings.total_ms or timings.total), None when absent."""
    timings = result.get("timings") if isinstance(result.get("timings"), dict) else {}
    value = timings.get("total_ms", timings.get("total"))
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def median_service_s(results: list[dict]) -> float | None:
    """Median service time per image in seconds over some results; None without any."""
    totals = [ms for ms in map(service_ms, results) if ms is not None]
    return statistics.median(totals) / 1000 if totals else None


def quiet_since(decisions: list[dict], backlog: int, now: float) -> float | None:
    """Since when the backlog has been zero, as far as the recorded decisions show; None if it is not."""
    if backlog > 0:
        return None
    since = now
    for doc in reversed(decisions):
        if doc.get("backlog", 0) > 0:
            break
        since = doc.get("time", since)
    return since


def _unlisted_launches(decisions: list[dict], listed: set[str], now: float) -> dict[str, float]:
    """Instances launched recently that DescribeInstances does not show yet, with their launch time."""
    found = {}
    for doc in decisions:
        if now - doc.get("time", 0) <= LAUNCH_VISIBILITY_S:
            found.update({i: doc["time"] for i in doc.get("launched", []) if i not in listed})
    return found
