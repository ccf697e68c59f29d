"""Album names for the choosers: one owner's, read by a query at most every ttl_s, plus the albums just used."""
from __future__ import annotations

import logging
import threading

from sightfleet.contracts import DEFAULT_ALBUM, owner_of
from sightfleet.errors import SightfleetError
from web_tier.cache import TtlCache

log = logging.getLogger(__name__)


class Albums:
    """Each owner's albums: queries are rationed per owner; albums this process just used show up at once."""

    def __init__(self, results, ttl_s: float = 30.0):
        self._results = results
        # One query per owner and expiry however many requests ask at once; the rest wait for its answer.
        self._reads = TtlCache(ttl_s)
        self._read: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        self._noted: dict[str, set[str]] = {}

    def note(self, result: dict) -> None:
        """Remember the album of an accepted image (Submitter's on_accept hook)."""
        with self._lock:
            self._noted.setdefault(owner_of(result), set()).add(result["album"])

    def forget(self, owner: str, album: str) -> None:
        """An album was deleted: stop offering it (until the next read says otherwise)."""
        with self._lock:
            self._noted.get(owner, set()).discard(album)
            self._read[owner] = self._read.get(owner, frozenset()) - {album}

    def names(self, owner: str) -> list[str]:
        """Every album of owner, with the default one, sorted for people; the last known list when out of reach."""
        self._reads.get(owner, lambda: self._query(owner))
        with self._lock:
            return sorted(self._read.get(owner, frozenset()) | self._noted.get(owner, set()) | {DEFAULT_ALBUM},
                          key=str.casefold)

    def _query(self, owner: str) -> None:
        """Read owner's albums; TtlCache runs one read per owner at a time."""
        try:
            found = frozenset(self._results.albums(owner))
        except SightfleetError as exc:
            log.warning("cannot list the albums of %s, showing the last known ones: %s", owner, exc)
            return
        with self._lock:
            self._read[owner] = found
