"""Album names for the choosers: one owner's, read by a query at most every ttl_s, plus the albums just used."""
from __future__ import annotations

import logging
import threading
import time

from sightfleet.contracts import DEFAULT_ALBUM, owner_of
from sightfleet.errors import SightfleetError
from web_tier.cache import TtlCache

log = logging.getLogger(__name__)


class Albums:
    """Each owner's albums: queries are rationed per owner; albums this process just used show up at once."""

    def __init__(self, results, ttl_s: float = 30.0, noted_s: float = 60.0):
        self._results = results
        # One query per owner and expiry however many requests ask at once; the rest wait for its answer.
        self._reads = TtlCache(ttl_s)
        self._read: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()
        # Albums of images accepted here, offered until the index surely shows them (it lags by moments):
        # after noted_s only the reads count, so an album emptied image by image leaves the list too.
        self._noted: dict[str, dict[str, float]] = {}
        self._noted_s = noted_s

    def note(self, result: dict) -> None:
        """Remember the album of an accepted image (Submitter's on_accept hook)."""
        with self._lock:
            self._noted.setdefault(owner_of(result), {})[result["album"]] = time.monotonic()

    def forget(self, owner: str, album: str) -> None:
        """An album was deleted: stop offering it (until the next read says otherwise)."""
        with self._lock:
            self._noted.get(owner, {}).pop(album, None)
            self._read[owner] = self._read.get(owner, frozenset()) - {album}

    def forget_if_empty(self, owner: str, album: str) -> None:
        """After one of its images was deleted: forget the album if that was its last (one query)."""
        try:
            left, _ = self._results.page(album, None, 1, None, owner)
        except SightfleetError as exc:
            log.warning("cannot tell whether album %r of %s is empty now: %s", album, owner, exc)
            return
        if not left:
            self.forget(owner, album)

    def choices(self, current: str | None, owner: str | None) -> list[str]:
        """The owner's albums, plus the one asked for in the URL (it may be new); none for every owner's listing."""
        if owner is None:
            return [current] if current else []
        names = self.names(owner)
        return names if not current or current in names else sorted(names + [current], key=str.casefold)

    def names(self, owner: str) -> list[str]:
        """Every album of owner, with the default one, sorted for people; the last known list when out of reach."""
        self._reads.get(owner, lambda: self._query(owner))
        now = time.monotonic()
        with self._lock:
            noted = {a for a, at in self._noted.get(owner, {}).items() if now - at < self._noted_s}
            return sorted(self._read.get(owner, frozenset()) | noted | {DEFAULT_ALBUM}, key=str.casefold)

    def _query(self, owner: str) -> None:
        """Read owner's albums; TtlCache runs one read per owner at a time."""
        try:
            found = frozenset(self._results.albums(owner))
        except SightfleetError as exc:
            log.warning("cannot list the albums of %s, showing the last known ones: %s", owner, exc)
            return
        with self._lock:
            self._read[owner] = found
