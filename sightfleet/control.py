"""Operator control of a running stack: pause, run-time fleet settings and the audit trail of every action.

The state is one item in the fleet table (kind "control", key "state") with a TTL of years, so it
survives restarts of every component and is read by all of them: the controller each tick, workers
and the web tier through a short cache. Every operator action also writes an audit document (kind
"audit", key = ISO time + a random suffix): who, what, when and how many. No tier is imported here.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import asdict, dataclass, fields, replace

from sightfleet.contracts import iso, utc_now
from sightfleet.errors import Invalid, SightfleetError

log = logging.getLogger(__name__)
CONTROL_KIND, CONTROL_KEY, AUDIT_KIND = "control", "state", "audit"
# The control item must outlive any restart: the fleet table's TTL would otherwise drop it after a day.
CONTROL_TTL_S = 20 * 365 * 86400
AUDIT_TTL_S = 30 * 86400
# Readers off the controller (workers, web processes) look at most this often.
CACHE_S = 2.0
# Idle grace a run-time change may set, in seconds.
IDLE_GRACE_RANGE = (1.0, 86400.0)
FLEET_FIELDS = ("min_instances", "max_instances", "warm_pool_size", "idle_grace_s")


@dataclass(frozen=True)
class ControlState:
    """Paused or not, and the fleet settings changed at run time (None: the deployed value)."""

    paused: bool = False
    paused_by: str | None = None
    paused_at: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    warm_pool_size: int | None = None
    idle_grace_s: float | None = None
    updated_by: str | None = None
    updated_at: str | None = None
    # A redrive asks the controller to show it the dead letters its sweep hides (controller/loop.py).
    release_dead_letters_at: str | None = None

    @classmethod
    def from_dict(cls, doc: dict | None) -> "ControlState":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (doc or {}).items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, settings):
        """The settings with this state's run-time fleet values in place of the deployed ones."""
        changes = {name: getattr(self, name) for name in FLEET_FIELDS if getattr(self, name) is not None}
        return settings.with_changes(**changes) if changes else settings


def fleet_problem(settings, changes: dict) -> str | None:
    """Why these run-time fleet values cannot be taken (the deployed settings bound them), or None."""
    unknown = set(changes) - set(FLEET_FIELDS)
    if unknown:
        return f"unknown fleet settings: {', '.join(sorted(unknown))} (known: {', '.join(FLEET_FIELDS)})"
    ceiling = settings.max_instances
    for name in ("min_instances", "max_instances", "warm_pool_size"):
        value = changes.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= ceiling):
            return f"{name} must be a whole number from 0 to the deployed maximum, {ceiling}"
    grace = changes.get("idle_grace_s")
    low, high = IDLE_GRACE_RANGE
    number = isinstance(grace, (int, float)) and not isinstance(grace, bool)
    if grace is not None and (not number or not low <= grace <= high):
        return f"idle_grace_s must be a number of seconds from {low:.0f} to {high:.0f}"
    return None


def bounds_problem(state: ControlState, settings) -> str | None:
    """Why the state's minimum and maximum contradict each other, or None."""
    effective = state.apply(settings)
    if effective.min_instances > effective.max_instances:
        return f"min_instances ({effective.min_instances}) above max_instances ({effective.max_instances})"
    return None


class Control:
    """Reads and writes the control item and the audit trail of one stack's fleet table."""

    def __init__(self, fleet_log, clock=time.time, cache_s: float = CACHE_S):
        self._log = fleet_log
        self._clock = clock
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, ControlState] | None = None

    def read(self) -> ControlState:
        """The stored state, read now; raises the project's errors when the table is out of reach."""
        docs = self._log.get_many(CONTROL_KIND, [CONTROL_KEY])
        state = ControlState.from_dict(docs.get(CONTROL_KEY))
        with self._lock:
            self._cached = (self._clock(), state)
        return state

    def current(self) -> ControlState:
        """The state as read at most cache_s ago; the last one read when the table fails (running by default)."""
        with self._lock:
            cached = self._cached
        if cached and self._clock() - cached[0] < self._cache_s:
            return cached[1]
        try:
            return self.read()
        except SightfleetError as exc:
            log.warning("control state unreadable (%s); going on with the last one read", exc)
            return cached[1] if cached else ControlState()

    def write(self, state: ControlState) -> ControlState:
        self._log.put(CONTROL_KIND, CONTROL_KEY, state.to_dict(), ttl_s=CONTROL_TTL_S)
        with self._lock:
            self._cached = (self._clock(), state)
        return state

    def set_paused(self, paused: bool, who: str) -> ControlState:
        """Pause or resume processing; the same again changes nothing but the audit."""
        state = self.read()
        if state.paused == paused:
            return state
        return self.write(replace(state, paused=paused, paused_by=who if paused else None,
                                  paused_at=utc_now() if paused else None))

    def request_dead_letters(self) -> ControlState:
        """Ask the controller to make the dead letters its sweep hides visible (at its next tick)."""
        return self.write(replace(self.read(), release_dead_letters_at=utc_now()))

    def set_fleet(self, settings, changes: dict, who: str) -> ControlState:
        """Change run-time fleet settings (None: back to the deployed value); Invalid when out of bounds."""
        problem = fleet_problem(settings, changes)
        if problem:
            raise Invalid(problem)
        updated = replace(self.read(), **changes, updated_by=who, updated_at=utc_now())
        problem = bounds_problem(updated, settings)
        if problem:
            raise Invalid(problem)
        return self.write(updated)

    def audit(self, who: str, action: str, count: int, details: dict | None = None) -> dict:
        """Record one operator action (who, what, when, how many) in the table and the log."""
        now = self._clock()
        doc = {"at": iso(now), "who": who, "action": action, "count": count, "details": details or {}}
        log.info("operator %s: %s (%s) %s", who, action, count, doc["details"])
        try:
            self._log.put(AUDIT_KIND, f"{doc['at']}#{secrets.token_hex(4)}", doc, ttl_s=AUDIT_TTL_S)
        except SightfleetError as exc:
            log.warning("audit of %s by %s not stored: %s", action, who, exc)
        return doc

    def recent_audit(self, limit: int = 20) -> list[dict]:
        """The newest audit documents, newest first."""
        return self._log.all(AUDIT_KIND, newest_first=True, limit=limit)
