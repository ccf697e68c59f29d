"""The anonymous owner's photos expire SIGHTFLEET_ANONYMOUS_EXPIRY_DAYS after they were sent.

Uploads without credentials (the open course endpoint) all belong to one built-in owner that nobody
can sign in as to delete them, so without an end they would pile up for good. A sweep deletes every
anonymous image older than the expiry, as DELETE /api/images/<id> does (row, original, thumbnail,
annotated copy, result JSON). Each web process checks every SWEEP_CHECK_S whether a sweep is due;
the limits table elects one process of the whole stack per SWEEP_EVERY_S (the first to count the
window), so the stack sweeps about once an hour however many processes it runs. Between sweeps an
image may outlive its expiry by up to an hour. The anonymous quota counts images sent per expiry
period (web_tier/limits.py), so what expires needs no counting off.
"""
from __future__ import annotations

import logging
import threading
import time

from sightfleet.aws.limits import LimitsTable
from sightfleet.contracts import ANONYMOUS_OWNER, iso
from sightfleet.deletion import delete_image
from sightfleet.errors import SightfleetError

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 3600
SWEEP_CHECK_S = 300
SWEEP_LEASE = "anonymous-expiry-sweep"
PAGE = 100


class AnonymousExpiry:
    """Deletes anonymous images older than `days`, from a daemon thread started by the first request."""

    def __init__(self, resources, table: LimitsTable, days: int):
        self.resources, self.table, self.days = resources, table, days
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        """before_request: start the sweeper in this process (not in a pre-fork parent) once."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="anonymous-expiry", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(SWEEP_CHECK_S)
            try:
                self.maybe_sweep()
            except Exception:  # noqa: BLE001 - the sweeper must outlive any one failed round
                log.exception("the anonymous photos' expiry sweep failed; trying again later")

    def maybe_sweep(self, now: float | None = None) -> int | None:
        """Sweep if no process of the stack did within SWEEP_EVERY_S; how many images went (None: not due here)."""
        try:
            if self.table.hit(SWEEP_LEASE, SWEEP_EVERY_S) != 1:
                return None
        except SightfleetError as exc:
            log.warning("expiry: cannot tell whether a sweep is due (%s); next check in %s s", exc, SWEEP_CHECK_S)
            return None
        return self.sweep(time.time() if now is None else now)

    def sweep(self, now: float) -> int:
        """Delete every anonymous image sent before now minus the expiry; how many went."""
        cutoff = iso(now - self.days * 86400)
        expired, cursor = [], None
        while True:   # collect first: deleting while paging would move the cursor's ground
            items, cursor = self.resources.results.page(None, None, PAGE, cursor, ANONYMOUS_OWNER)
            expired += [doc for doc in items if (doc.get("submitted_at") or cutoff) < cutoff]
            if cursor is None:
                break
        for doc in expired:
            delete_image(self.resources, doc)
        if expired:
            log.info("expiry: deleted %s anonymous images sent before %s", len(expired), cutoff)
        return len(expired)
