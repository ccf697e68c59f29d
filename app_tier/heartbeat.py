"""A background thread that keeps held messages invisible and tells the fleet this worker lives."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from sightfleet.aws.dynamodb import HEARTBEAT_KIND
from sightfleet.contracts import utc_now
from sightfleet.errors import SightfleetError
from sightfleet.procs import lower_priority

log = logging.getLogger(__name__)


class Heartbeat:
    """Extends visibility of held messages and writes the worker's status, on a timer and at once on announce()."""

    def __init__(self, resources, instance_id: str, describe: Callable[[], dict]):
        settings = resources.settings
        self._resources = resources
        self._instance_id = instance_id
        self._describe = describe  # the worker's status, read fresh at every beat
        self._state = "starting"
        self._visibility_s = settings.visibility_timeout_s
        # Extend well before expiry so one slow call cannot let a message reappear.
        self._extend_every_s = max(1.0, settings.visibility_timeout_s / 3)
        self._beat_every_s = settings.worker_heartbeat_s
        # receipt -> when its visibility was last set, so each is extended before it lapses
        self._held: dict[str, float] = {}
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
            self._held.update(dict.fromkeys(receipts, now))

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
        next_beat = next_extend = time.monotonic()
        while True:
            announced = self._wake.wait(1.0)
            if self._stopping:
                break
            self._wake.clear()
            now = time.monotonic()
            if now >= next_extend:
                self._extend()
                next_extend = now + self._extend_every_s
            if announced or now >= next_beat:
                self.beat()
                next_beat = now + self._beat_every_s

    def _extend(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [r for r, since in self._held.items() if now - since >= self._extend_every_s]
        if not due:
            return
        try:
            self._resources.requests.set_visibility(due, self._visibility_s)
            log.info("extended visibility of %s messages", len(due))
        except SightfleetError as exc:
            log.warning("could not extend visibility: %s", exc)
            return
        with self._lock:
            for receipt in due:
                if receipt in self._held:
                    self._held[receipt] = now
