"""Album names for the choosers: a table scan at most every ttl_s, plus the albums this process just used."""
from __future__ import annotations

import logging
import threading

from sightfleet.contracts import DEFAULT_ALBUM
from sightfleet.errors import SightfleetError
from web_tier.cache import TtlCache

log = logging.getLogger(__name__)


class Albums:
    """Listing albums scans the results table, so scans are rationed; new albums show up at once."""

    def __init__(self, results, ttl_s: float = 30.0):
        self._results = results
        # One scan per expiry however many requests ask at once; the rest wait for its answer.
        self._scans = TtlCache(ttl_s)
        self._scanned: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._noted: set[str] = {DEFAULT_ALBUM}

    def note(self, result: dict) -> None:
        """Remember the album of an accepted image (Submitter's on_accept hook)."""
        with self._lock:
            self._noted.add(result["album"])

    def names(self) -> list[str]:
        """Every album known, sorted for people; the last known list when the table is out of reach."""
        scanned = self._scans.get("albums", self._scan)
        with self._lock:
            return sorted(scanned | self._noted, key=str.casefold)

    def _scan(self) -> frozenset[str]:
        """The table's albums; TtlCache runs one scan at a time, so _scanned needs no lock."""
        try:
            self._scanned = frozenset(self._results.albums())
        except SightfleetError as exc:
            log.warning("cannot list albums, showing the last known ones: %s", exc)
        return self._scanned
