"""Album names for the choosers: a table scan at most every ttl_s, plus the albums this process just used."""
from __future__ import annotations

import logging
import threading
import time

from sightfleet.contracts import DEFAULT_ALBUM
from sightfleet.errors import SightfleetError

log = logging.getLogger(__name__)


class Albums:
    """Listing albums scans the results table, so scans are rationed; new albums show up at once."""

    def __init__(self, results, ttl_s: float = 30.0):
        self._results = results
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._scanned: set[str] = set()
        self._noted: set[str] = {DEFAULT_ALBUM}
        self._scanned_at = float("-inf")

    def note(self, result: dict) -> None:
        """Remember the album of an accepted image (Submitter's on_accept hook)."""
        with self._lock:
            self._noted.add(result["album"])

    def names(self) -> list[str]:
        """Every album known, sorted for people; the last known list when the table is out of reach."""
        if time.monotonic() - self._scanned_at > self._ttl_s:
            self._scan()
        with self._lock:
            return sorted(self._scanned | self._noted, key=str.casefold)

    def _scan(self) -> None:
        try:
            scanned = set(self._results.albums())
        except SightfleetError as exc:
            log.warning("cannot list albums, showing the last known ones: %s", exc)
            scanned = None
        with self._lock:
            self._scanned_at = time.monotonic()
            if scanned is not None:
                self._scanned = scanned
