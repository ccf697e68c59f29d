"""A background thread that keeps held messages invisible and tells the fleet this worker lives.

It is also the worker's watchdog: visibility is extended only while jobs make progress. A pipeline
hung in C code (which no alarm can interrupt) would otherwise keep its messages invisible forever;
after stall_timeout_s without progress the thread hands them back and calls on_stall, which ends
the process so that it (on AWS, systemd) or its instance (locally, the EC2 host) is replaced.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from sightfleet.contracts import utc_now
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import HEARTBEAT_KIND
from sightfleet.procs import lower_priority

if TYPE_CHECKING:
    from sightfleet.resources import Resources

log = logging.getLogger(__name__)


class Heartbeat:
    """Extends visibility of held messages and writes the worker's status, on a timer and at once on announce()."""

    def __init__(self, resources: Resources, instance_id: str, describe: Callable[[], dict],
                 on_stall: Callable[[], None] | None = None):
        settings = resources.settings
        self._resources = resources
        self._instance_id = instance_id
        self._describe = describe  # the worker's status, read fresh at every beat
        self._state = "starting"
        self._visibility_s = settings.visibility_timeout_s
        # Extend a third of the way in, and retry a failure every second: it has two thirds left to succeed.
        self._extend_every_s = max(1.0, settings.visibility_timeout_s / 3)
        self._beat_every_s = settings.worker_heartbeat_s
        # receipt -> when its visibility was last set, so each is extended before it lapses
        self._held: dict[str, float] = {}
        self._stall_timeout_s = settings.stall_timeout_s
        self._on_stall = on_stall
        self._last_progress = time.monotonic()
        self._lock = threading.Lock()
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=10)

    def announce(self, state: str) -> None:
        """A new state, written by the heartbeat thread at once, so the caller never waits on the table.

        The same state again writes nothing: the next beat carries whatever else changed.
        """
        if state != self._state:
            self._state = state
            self._wake.set()

    def hold(self, receipts: list[str]) -> None:
        """Messages now being worked on (added to those still held)."""
        now = time.monotonic()
        with self._lock:
            if not self._held:
                self._last_progress = now  # the watchdog's clock runs only while work is held
            self._held.update(dict.fromkeys(receipts, now))

    def progress(self) -> None:
        """A job moved on by one step: the watchdog's clock starts again."""
        self._last_progress = time.monotonic()

    def release(self, receipt: str) -> None:
        """A message is finished (deleted) or handed back."""
        with self._lock:
            self._held.pop(receipt, None)

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def beat(self, state: str | None = None) -> None:
        """Write this worker's status to the fleet table now."""
        if state:
            self._state = state
        doc = {**self._describe(), "state": self._state, "last_heartbeat": utc_now()}
        try:
            self._resources.fleet_log.put(HEARTBEAT_KIND, self._instance_id, doc)
        except SightfleetError as exc:
            log.warning("heartbeat not written: %s", exc)

    def _run(self) -> None:
        lower_priority()
        next_beat = time.monotonic()
        while True:
            announced = self._wake.wait(1.0)
            if self._stopping:
                break
            self._wake.clear()
            now = time.monotonic()
            try:
                if self._stalled(now):
                    break
                # Every round: each receipt is extended within a second of falling due, a failed one retried.
                self._extend()
                if announced or now >= next_beat:
                    self.beat()
                    next_beat = now + self._beat_every_s
            except Exception:  # noqa: BLE001 - a heartbeat that dies silently would let every held job lapse
                log.exception("heartbeat round failed; trying again")

    def _stalled(self, now: float) -> bool:
        """True (after handing back what is held and calling on_stall) when held work made no progress in time."""
        held = self.held()
        quiet_s = now - self._last_progress
        if not held or self._on_stall is None or quiet_s < self._stall_timeout_s:
            return False
        log.error("no job has made progress for %.0f s while %s messages are held: the pipeline is hung; "
                  "handing them back and ending this worker", quiet_s, len(held))
        try:
            self._resources.requests.set_visibility(held, 0)
        except SightfleetError as exc:
            log.warning("could not hand back the held messages (%s); they reappear when visibility lapses", exc)
        self.beat("stalled")
        self._on_stall()
        return True

    def _extend(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [r for r, since in self._held.items() if now - since >= self._extend_every_s]
        if not due:
            return
        try:
            failed = set(self._resources.requests.set_visibility(due, self._visibility_s))
        except SightfleetError as exc:
            log.warning("could not extend visibility: %s", exc)
            return
        log.info("extended visibility of %s messages", len(due) - len(failed))
        with self._lock:
            for receipt in due:
                if receipt in self._held and receipt not in failed:   # failed ones are tried again next round
                    self._held[receipt] = now
