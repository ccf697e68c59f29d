"""Failed sign-ins, counted per user name and per address in the limits table, so passwords cannot be guessed at speed.

API keys need no such guard (256 random bits cannot be guessed), but passwords are chosen by people.
Only failures count; past the limit a name, or an address, gets 429 with Retry-After until its window
ends, before any password is checked. The count is shared by every web process and instance, like
the rate limits. When the table is out of reach the guard lets the attempt through (logged): the
password is still checked, and refusing every sign-in would lock everyone out instead.
"""
from __future__ import annotations

import logging
import math
import time

from sightfleet.aws.limits import LimitsTable
from sightfleet.errors import SightfleetError

log = logging.getLogger(__name__)
WINDOW_S = 15 * 60
FAILURES_PER_NAME = 10     # a person mistyping stays far below this
FAILURES_PER_ADDRESS = 50  # several people behind one NAT may share an address


class SignInGuard:
    """Counts failed sign-ins, and says how long a name or address must wait once it has too many."""

    def __init__(self, table: LimitsTable, per_name: int = FAILURES_PER_NAME,
                 per_address: int = FAILURES_PER_ADDRESS, window_s: int = WINDOW_S):
        self.table, self.window_s = table, window_s
        self.limits = {"name": per_name, "address": per_address}

    def wait_s(self, name: str, address: str) -> int:
        """Seconds until this name and address may try again (0: now)."""
        try:
            waits = [self._wait(kind, value) for kind, value in self._keys(name, address)]
        except SightfleetError as exc:
            log.warning("sign-in guard: failures cannot be read (%s); letting the attempt through", exc)
            return 0
        return max(waits)

    def failed(self, name: str, address: str) -> None:
        """Count one failed sign-in against the name and the address."""
        try:
            for kind, value in self._keys(name, address):
                self.table.hit(f"signin-{kind}:{value}", self.window_s)
        except SightfleetError as exc:
            log.warning("sign-in guard: a failure could not be counted (%s)", exc)

    def _wait(self, kind: str, value: str) -> int:
        hits, ends_at = self.table.window(f"signin-{kind}:{value}")
        return math.ceil(max(1.0, ends_at - time.time())) if hits >= self.limits[kind] else 0

    @staticmethod
    def _keys(name: str, address: str) -> list[tuple[str, str]]:
        return [("name", name.strip().lower()[:128]), ("address", address or "unknown")]
