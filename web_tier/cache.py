"""A small time-to-live cache where concurrent askers of one key wait for a single computation."""
from __future__ import annotations

import threading
import time


class TtlCache:
    """Values kept ttl_s per key; concurrent askers of one key wait for a single computation."""

    def __init__(self, ttl_s: float, clock=time.monotonic):
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict = {}
        self._key_locks: dict = {}

    def get(self, key, compute):
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
            if entry and self._clock() - entry[0] < self._ttl_s:
                return entry[1]
            value = compute()
            with self._lock:
                self._prune()
                self._entries[key] = (self._clock(), value)
            return value

    def _prune(self) -> None:
        # Keys may stop being asked for (ops keys carry window boundaries); drop expired ones.
        now = self._clock()
        for key in [k for k, (at, _) in self._entries.items() if now - at >= self._ttl_s]:
            del self._entries[key]
            lock = self._key_locks.get(key)
            if lock is not None and not lock.locked():
                del self._key_locks[key]
