"""Requests per key in fixed windows of the limits table (sightfleet/aws/limits.py), as a `limits` storage,
and per remote address with an in-memory fallback while the table is out of reach."""
from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from sightfleet.aws.limits import LimitsTable
from sightfleet.errors import SightfleetError

log = logging.getLogger(__name__)
SHARED_RETRY_S = 10   # how long an address counter counts in memory before it tries the table again


class DynamoStorage(Storage):
    """A `limits` storage on the limits table (fixed windows: all that one atomic counter needs)."""

    STORAGE_SCHEME = ["sightfleet+dynamodb"]

    def __init__(self, uri: str | None = None, table: LimitsTable | None = None, **options):
        super().__init__(uri, **options)
        self.table = table

    @property
    def base_exceptions(self):
        return SightfleetError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.table.hit(key, int(expiry), amount)

    def get(self, key: str) -> int:
        return self.table.window(key)[0]

    def get_expiry(self, key: str) -> float:
        return self.table.window(key)[1]

    def check(self) -> bool:
        try:
            self.table.check()
        except SightfleetError as exc:
            log.warning("the limits table is still unreachable: %s", exc)
            return False
        return True

    def reset(self) -> int | None:
        return self.table.clear_all()

    def clear(self, key: str) -> None:
        self.table.clear(key)


class AddressCounter:
    """Requests per remote address in fixed windows, in the limits table or (while it is out of reach) in memory."""

    def __init__(self, table: LimitsTable, limit: str, namespace: str):
        self.limit, self.namespace = parse(limit), namespace
        self._shared = FixedWindowRateLimiter(DynamoStorage(table=table))
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._shared_down_until = 0.0   # while the table is out of reach, requests do not each wait for it

    def wait_s(self, address: str) -> int:
        """Count one request from address; 0 when it may go on, else the seconds until its window ends."""
        if time.monotonic() >= self._shared_down_until:
            try:
                return self._wait(self._shared, address)
            except SightfleetError as exc:
                log.warning("address limit: the limits table is out of reach (%s); counting in memory for %s s",
                            exc, SHARED_RETRY_S)
                self._shared_down_until = time.monotonic() + SHARED_RETRY_S
        return self._wait(self._local, address)

    def _wait(self, limiter: FixedWindowRateLimiter, address: str) -> int:
        if limiter.hit(self.limit, self.namespace, address):
            return 0
        reset_at = limiter.get_window_stats(self.limit, self.namespace, address).reset_time
        return math.ceil(max(1.0, reset_at - time.time()))
