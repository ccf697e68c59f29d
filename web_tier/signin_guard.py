"""Password sign-ins, bounded twice: attempts counted per name and address, and verifications at once per process.

API keys and one-time links need no such guard (256 random bits cannot be guessed), but passwords are
chosen by people, and each check of one costs an argon2id run (19 MiB, tens of milliseconds).

- The guard counts an attempt BEFORE its password is checked, with one atomic ADD per counter, and
  decides on the count that ADD returns: of a concurrent burst, exactly the first `limit` go on. The
  counters are checked in order, address, then name and address together (the strict limit), then
  name alone (a higher limit), and the first one over its limit stops the attempt before the next is
  counted: so one address adds at most PER_PAIR attempts to a name's count, and only many addresses
  together can hold a name's password sign-in back, for one window. One-time links are never held
  back. A successful sign-in clears its name-and-address count. The counts live in the limits table,
  shared by every web process; when it is out of reach the guard lets the attempt through (logged):
  refusing every sign-in would lock everyone out instead.
- The gate lets at most SIGHTFLEET_SIGNIN_CONCURRENCY verifications run at once in a process, so a
  flood of sign-ins cannot take the web tier's memory; one more is refused at once (503, Retry-After).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from sightfleet.aws.limits import LimitsTable
from sightfleet.errors import SightfleetError

log = logging.getLogger(__name__)
WINDOW_S = 15 * 60
PER_ADDRESS = 100   # several people behind one NAT may share an address
PER_PAIR = 10       # a person mistyping stays far below this
PER_NAME = 100      # from 10 addresses or more: what it takes to hold a name back for one window
BUSY_RETRY_AFTER_S = 1


class VerifierBusy(Exception):
    """Every password verification slot of this process is in use."""


class SignInGuard:
    """Counts password sign-in attempts first, and says how long an attempt must wait when one count is over."""

    def __init__(self, table: LimitsTable, window_s: int = WINDOW_S, per_address: int = PER_ADDRESS,
                 per_pair: int = PER_PAIR, per_name: int = PER_NAME):
        self.table, self.window_s = table, window_s
        self.limits = {"address": per_address, "pair": per_pair, "name": per_name}   # in the order counted

    def admit(self, name: str, address: str) -> int:
        """Count this attempt; 0 when it may go on, else the seconds until the count that stopped it ends."""
        try:
            for key, limit in zip(self._keys(name, address), self.limits.values()):
                if self.table.hit(key, self.window_s) > limit:
                    return math.ceil(max(1.0, self.table.window(key)[1] - time.time()))
        except SightfleetError as exc:
            log.warning("sign-in guard: attempts cannot be counted (%s); letting the attempt through", exc)
        return 0

    def succeeded(self, name: str, address: str) -> None:
        """Forget this name-and-address's attempts (a person who signs in is not held back by their typos)."""
        try:
            self.table.clear(self._keys(name, address)[1])
        except SightfleetError as exc:
            log.warning("sign-in guard: attempts could not be cleared (%s)", exc)

    @staticmethod
    def _keys(name: str, address: str) -> list[str]:
        name, address = name.strip().lower()[:128], address or "unknown"
        return [f"signin-address:{address}", f"signin-pair:{name}|{address}", f"signin-name:{name}"]


class VerificationGate:
    """At most `slots` password verifications at once in this process; past that, VerifierBusy at once."""

    def __init__(self, slots: int):
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.verifications = 0   # verifications started (for tests and logs)

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            log.warning("all %s password verification slots are busy; refusing a sign-in", self.slots)
            raise VerifierBusy()
        with self._lock:
            self.verifications += 1
        try:
            yield
        finally:
            self._free.release()
