"""A background thread that keeps held messages invisible and tells the fleet this worker lives."""
from __future__ import annotations

import logging
import threading
import time

from sightfleet.contracts import utc_now
from sightfleet.errors import SightfleetError

log = logging.getLogger(__name__)


class Heartbeat:
    """Extends visibility of held messages and writes the worker's status, on a timer."""

    def __init__(self, resources, instance_id: str, status: dict):
        settings = resources.settings
        self._resources = resources
        self._instance_id = instance_id
        self._status = status
        self._visibility_s = settings.visibility_timeout_s
        # Extend well before expiry so one slow call cannot let a message reappear.
        self._extend_every_s = max(1.0, settings.visibility_timeout_s / 3)
        self._beat_every_s = settings.worker_heartbeat_s
        self._held: list[str] = []
        self._held_since = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def hold(self, receipts: list[str]) -> None:
        """Messages now being worked on."""
        with self._lock:
            self._held = list(receipts)
            self._held_since = time.monotonic()

    def release(self, receipt: str) -> None:
        """A message is finished (deleted) or handed back."""
        with self._lock:
            if receipt in self._held:
                self._held.remove(receipt)

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def beat(self, state: str | None = None) -> None:
        """Write this worker's status to the fleet table now."""
        if state:
            self._status["state"] = state
        self._status["last_heartbeat"] = utc_now()
        try:
            self._resources.fleet_log.put("worker", self._instance_id, dict(self._status))
        except SightfleetError as exc:
            log.warning("heartbeat not written: %s", exc)

    def _run(self) -> None:
        next_beat = next_extend = time.monotonic()
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if now >= next_extend:
                self._extend()
                next_extend = now + self._extend_every_s
            if now >= next_beat:
                self.beat()
                next_beat = now + self._beat_every_s

    def _extend(self) -> None:
        with self._lock:
            receipts = list(self._held)
            age = time.monotonic() - self._held_since
        if not receipts or age < self._extend_every_s:
            return
        try:
            self._resources.requests.set_visibility(receipts, self._visibility_s)
            log.info("extended visibility of %s messages after %.0f s", len(receipts), age)
        except SightfleetError as exc:
            log.warning("could not extend visibility: %s", exc)
