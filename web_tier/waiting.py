"""Waiting for results: one poller thread per process reads every waited-for id in one batch.

A synchronous request (`POST /`, `POST /api/images?wait=`) waits by reading the results table by
id, never by consuming the response queue, so any gunicorn worker on any web instance can wait
for any image and no process can take another's result. With 100 requests waiting at once, one
`batch_get_item` every `interval_s` replaces 100 separate polls (benchmarks/web_wait.py measures
both against the local endpoint). WaitBudget bounds how many requests wait at once, per caller.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from sightfleet.contracts import DELETED, FINAL_STATUSES
from sightfleet.errors import SightfleetError

log = logging.getLogger(__name__)
# A waiter wakes when its results are final, or deleted: a tombstone will never become final. The
# waiter hands back rows as read, whoever owns them; callers wait only for ids they may see, and check
# what comes back (web_tier/owners.py) before showing it.
SETTLED = FINAL_STATUSES | {DELETED}


@dataclass(eq=False)
class _Waiter:
    """One request's wish: these ids, all final."""

    ids: tuple[str, ...]
    found: dict = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)

    def missing(self) -> list[str]:
        return [i for i in self.ids if i not in self.found]

    def offer(self, final: dict[str, dict]) -> None:
        for image_id in self.missing():
            if image_id in final:
                self.found[image_id] = final[image_id]
        if not self.missing():
            self.done.set()


class ResultWaiter:
    """Wakes waiting requests when their results are final; the thread runs only while someone waits.

    Whatever a poll raises, the thread carries on, and should it die anyway it is replaced.
    """

    def __init__(self, results, interval_s: float = 0.25, idle_exit_s: float = 5.0):
        self._results = results
        self._interval_s = interval_s
        self._idle_exit_s = idle_exit_s
        self._cond = threading.Condition()
        self._waiters: list[_Waiter] = []
        self._thread: threading.Thread | None = None
        self.batch_reads = 0  # batch reads made so far (for tests and benchmarks)

    @property
    def is_polling(self) -> bool:
        """True while the poller thread runs (it stops after idle_exit_s without waiters)."""
        return self._thread is not None

    def wait(self, image_ids: list[str], timeout_s: float) -> list[dict] | None:
        """The settled (final or deleted) rows in the order asked, or None when not all settle in time."""
        waiter = _Waiter(tuple(dict.fromkeys(image_ids)))
        with self._cond:
            self._waiters.append(waiter)
            self._start_thread()
            self._cond.notify()
        try:
            if not waiter.done.wait(timeout_s):
                return None
            return [waiter.found[i] for i in image_ids]
        finally:
            with self._cond:
                self._waiters.remove(waiter)

    def _start_thread(self) -> None:
        # Started lazily (under the lock) so it lives in the gunicorn worker, not a pre-fork parent.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="result-waiter", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # noqa: BLE001 - whatever ended it, the finally below hands over
            log.exception("the result poller died; a fresh one takes over while requests wait")
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None
                    # Requests that came in after the loop last looked, or that it left behind dying.
                    if self._waiters:
                        self._start_thread()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._waiters, self._idle_exit_s):
                    return
                wanted = list(dict.fromkeys(i for w in self._waiters for i in w.missing()))
            started = time.monotonic()
            try:
                self._poll(wanted)
            except Exception:  # noqa: BLE001 - one bad round must not leave every waiter asleep
                log.exception("a result poll of %s ids failed; trying again next round", len(wanted))
            time.sleep(max(0.0, self._interval_s - (time.monotonic() - started)))

    def _poll(self, wanted: list[str]) -> None:
        if not wanted:
            return
        try:
            results = self._results.get_many(wanted)
        except SightfleetError as exc:
            # Waiters keep waiting: their own timeouts decide, and the next round may get through.
            log.warning("polling %s results failed: %s", len(wanted), exc)
            return
        finally:
            self.batch_reads += 1
        final = {r["id"]: r for r in results if r["status"] in SETTLED}
        if final:
            with self._cond:
                for waiter in self._waiters:
                    waiter.offer(final)


class WaitRefused(Exception):
    """The caller holds every wait it may (or anonymous callers together do): answer now, without waiting."""


class WaitBudget:
    """How many requests may wait at once in this process: per caller, and for all anonymous callers together.

    A waiting request holds one of the process's threads (up to 120 s for `POST /`), so without a bound
    one address could hold them all; a refused wait answers at once with where to poll instead.
    """

    def __init__(self, per_caller: int, anonymous: int):
        self.per_caller, self.anonymous = per_caller, anonymous
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._anonymous_held = 0

    @contextmanager
    def slot(self, caller: str, anonymous: bool) -> Iterator[None]:
        """Hold one wait for caller while the block runs; WaitRefused when it may hold no more."""
        with self._lock:
            if self._held.get(caller, 0) >= self.per_caller or (anonymous and self._anonymous_held >= self.anonymous):
                log.info("wait refused: %s holds %s waits (anonymous callers %s)", caller,
                         self._held.get(caller, 0), self._anonymous_held)
                raise WaitRefused()
            self._held[caller] = self._held.get(caller, 0) + 1
            self._anonymous_held += anonymous
        try:
            yield
        finally:
            with self._lock:
                self._held[caller] -= 1
                if not self._held[caller]:
                    del self._held[caller]
                self._anonymous_held -= anonymous
