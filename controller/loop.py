"""The control loop: each tick observes the stack, asks the policy, applies the decision, records it.

Every tick writes one decision document to the fleet table, kind "decision", key = ISO time:
  {time (epoch s), at (ISO), visible, in_flight, dead_letters, backlog, running, pending, target,
   pooled, time_per_image_s, quiet_for_s, desired, launch, launched: [ids], started: [ids],
   terminated: [{id, reason}], errors: [text], changed, paused, limits: {min_instances, max_instances,
   warm_pool_size, idle_grace_s} (the run-time values in force, sightfleet/control.py)}
and the metrics listed in controller/metrics.py.

The tick is controller_tick_s (SIGHTFLEET_CONTROLLER_TICK_S, 2 s; 1 s in the benchmarks), except
after a tick that saw no backlog: the wait for the next one then reads the request queue's
counts every BACKLOG_WATCH_S and ticks as soon as a message is visible, so a burst into an idle
or empty fleet is acted on within BACKLOG_WATCH_S plus one GetQueueAttributes (about 0.3 s
locally), not up to a whole tick later. On AWS that watch is 4 GetQueueAttributes a second
while idle, about 350,000 a day: under $0.15 a day at SQS's $0.40 per million requests.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controller import dead_letters
from controller.metrics import tick_values
from controller.observe import Observer, Snapshot
from controller.policy import Decision, PolicyConfig, decide, target_backlog
from sightfleet.contracts import iso
from sightfleet.control import FLEET_FIELDS, Control
from sightfleet.deploy.templates import user_data
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import DECISION_KIND

if TYPE_CHECKING:
    from sightfleet.config import Settings
    from sightfleet.resources import Resources

log = logging.getLogger(__name__)
# While the backlog is zero, the queue's counts are read this often between ticks.
BACKLOG_WATCH_S = 0.25


@dataclass
class Applied:
    """What applying a decision actually did."""

    launched: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    terminated: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Controller:
    """observe -> policy -> apply, one tick at a time; keeps no fleet state of its own."""

    def __init__(self, resources: Resources, settings: Settings, clock=time.time):
        self._resources = resources
        self._settings = settings
        self._observer = Observer(resources, settings)
        # Rendered once: the settings are read once at start and do not change while running.
        self._user_data = user_data(settings, "worker")
        self._clock = clock
        self._idle = False   # the last tick saw no backlog: watch for one until the next
        self._control = Control(resources.fleet_log, clock, cache_s=0.0)   # read afresh every tick
        self._swept: dict[str, str] = {}   # dead letters the sweep hides: message id -> receipt
        self._released: str | None = None  # the latest redrive request whose dead letters were released

    def run(self, stop: threading.Event) -> None:
        """Tick every controller_tick_s (sooner when a backlog appears from zero) until stop is set."""
        log.info("controller for stack %s: fleet %s..%s, tick %.1f s", self._settings.prefix,
                 self._settings.min_instances, self._settings.max_instances, self._settings.controller_tick_s)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a bug in one tick must not stop the fleet's control
                log.exception("controller tick failed; carrying on with the next")
            wait_s = max(0.0, self._settings.controller_tick_s - (time.monotonic() - started))
            if self._idle:
                self._await_backlog(stop, wait_s)
            else:
                stop.wait(wait_s)
        log.info("controller stopped")

    def _await_backlog(self, stop: threading.Event, wait_s: float) -> None:
        """Wait up to wait_s, ending as soon as the request queue shows a visible message."""
        deadline = time.monotonic() + wait_s
        while not stop.wait(max(0.0, min(BACKLOG_WATCH_S, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            try:
                visible = self._resources.requests.counts()["visible"]
            except SightfleetError as exc:
                log.debug("cannot read the request queue between ticks (%s); the next tick will try", exc)
                return
            if visible:
                log.info("%s messages arrived in an idle stack; ticking now", visible)
                return

    def tick(self) -> Decision | None:
        """One observe -> decide -> apply round; None when the stack could not be read."""
        now = self._clock()
        control = self._control.current()   # the last one read when the table fails this tick
        try:
            snapshot = self._observer.observe(now, control.paused)
        except SightfleetError as exc:
            log.warning("cannot read the stack (%s); skipping this tick", exc)
            return None
        settings = control.apply(self._settings)   # run-time fleet settings, within the deployed limits
        target = target_backlog(settings.acceptable_latency_s, snapshot.time_per_image_s,
                                settings.target_backlog_per_instance)
        decision = decide(snapshot.observation(), PolicyConfig.from_settings(settings, target))
        self._idle = snapshot.backlog == 0
        applied = self._apply(decision)
        self._report(snapshot, target, decision, applied, settings)
        if control.release_dead_letters_at != self._released:
            self._release_dead_letters(control.release_dead_letters_at)
        elif snapshot.dead_letters:
            self._sweep_dead_letters()
        return decision

    def _sweep_dead_letters(self) -> None:
        try:
            dead_letters.sweep(self._resources, held=self._swept)
        except SightfleetError as exc:
            log.warning("dead-letter sweep failed: %s", exc)

    def _release_dead_letters(self, requested_at: str | None) -> None:
        """An operator redrives: the dead letters this controller's sweep hides become visible to it now."""
        try:
            released = dead_letters.release(self._resources, self._swept)
        except SightfleetError as exc:
            log.warning("dead letters not released for the redrive: %s", exc)
            return
        self._released = requested_at
        log.info("redrive asked at %s: %s dead letters the sweep held are visible again", requested_at, released)

    def _apply(self, decision: Decision) -> Applied:
        applied = Applied()
        if decision.terminate:
            try:
                self._resources.fleet.terminate(decision.terminate_ids)
                applied.terminated = list(decision.terminate)
            except SightfleetError as exc:
                applied.errors.append(f"terminate {decision.terminate_ids}: {exc}")
        if decision.start:
            try:
                self._resources.fleet.start(list(decision.start))
                applied.started = list(decision.start)
            except SightfleetError as exc:
                applied.errors.append(f"start {list(decision.start)}: {exc}")
        if decision.launch:
            try:
                applied.launched = self._resources.fleet.launch(decision.launch, self._user_data)
            except SightfleetError as exc:
                applied.errors.append(f"launch {decision.launch}: {exc}")
        return applied

    def _report(self, snapshot: Snapshot, target: int, decision: Decision, applied: Applied,
                settings: Settings) -> None:
        doc = decision_record(snapshot, target, decision, applied)
        doc.update(paused=snapshot.paused, limits={name: getattr(settings, name) for name in FLEET_FIELDS})
        if doc["changed"] or applied.errors:
            log.info("backlog %s (%s visible, %s in flight), %s running + %s pending + %s pooled, target %s -> "
                     "desired %s: launched %s, started %s, terminated %s%s", doc["backlog"], doc["visible"],
                     doc["in_flight"], doc["running"], doc["pending"], doc["pooled"], target, decision.desired,
                     applied.launched or "none", applied.started or "none",
                     [f"{i} ({why})" for i, why in applied.terminated] or "none",
                     f"; errors: {applied.errors}" if applied.errors else "")
        # Each record on its own: metrics still go out when the table is unreachable, and the reverse.
        for what, record in (("decision", lambda: self._resources.fleet_log.put(DECISION_KIND, doc["at"], doc)),
                             ("metrics", lambda: self._resources.metrics.put(tick_values(doc)))):
            try:
                record()
            except SightfleetError as exc:
                log.warning("%s not recorded: %s", what, exc)


def decision_record(snapshot: Snapshot, target: int, decision: Decision, applied: Applied) -> dict:
    """The document stored for one tick (see the module docstring)."""
    quiet = snapshot.quiet_since
    return {
        "time": snapshot.now, "at": iso(snapshot.now),
        "visible": snapshot.visible, "in_flight": snapshot.in_flight, "dead_letters": snapshot.dead_letters,
        "backlog": snapshot.backlog, "running": snapshot.count("running"), "pending": snapshot.count("pending"),
        "pooled": len(snapshot.pooled), "target": target, "time_per_image_s": snapshot.time_per_image_s,
        "quiet_for_s": None if quiet is None else round(snapshot.now - quiet, 3),
        "desired": decision.desired, "launch": decision.launch, "launched": applied.launched,
        "started": applied.started, "terminated": [{"id": i, "reason": why} for i, why in applied.terminated],
        "errors": applied.errors, "changed": bool(applied.launched or applied.started or applied.terminated),
    }
