"""The health checks behind GET /healthz: each runs in a thread of its own, the verdict within a deadline.

A check still running at the deadline reports a timeout, and a hung check is not started again while
it runs; a verdict is reused for VERDICT_TTL_S (each costs about nine AWS calls). See web_tier/health.py.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)
HEALTH_DEADLINE_S = 5.0
VERDICT_TTL_S = 1.5


class _Run:
    """One check running in its own daemon thread; `problem` is None once it passed."""

    def __init__(self, name: str, check: Callable[[], object]):
        self.name, self.problem = name, None
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(check,), name=f"health {name}", daemon=True).start()

    def _run(self, check: Callable[[], object]) -> None:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - a health check reports, never raises
            self.problem = f"{self.name}: {type(exc).__name__}: {exc}"
        finally:
            self.done.set()


class HealthProbe:
    """Runs every check concurrently and reports within deadline_s, a check still running as a timeout."""

    def __init__(self, resources, deadline_s: float = HEALTH_DEADLINE_S, ttl_s: float = VERDICT_TTL_S):
        self._checks = dict(resources.checks())
        self._deadline_s, self._ttl_s = deadline_s, ttl_s
        self._verdict: tuple[float, list[str]] | None = None   # (when it was reached, its problems)
        self._verdict_lock = threading.Lock()
        self._lock = threading.Lock()
        self._running: dict[str, _Run] = {}

    def also_check(self, name: str, check: Callable[[], object]) -> None:
        """Add a check (a resource some requests cannot do without, as the quota needs the limits table)."""
        with self._lock:
            self._checks[name] = check

    def problems(self) -> list[str]:
        """Why each resource is unreachable or too slow; empty when all answered in time (reused VERDICT_TTL_S)."""
        with self._verdict_lock:   # one request at a time checks; the others wait for its verdict
            if self._verdict is None or time.monotonic() - self._verdict[0] > self._ttl_s:
                self._verdict = (time.monotonic(), self._check())
            return list(self._verdict[1])

    def forget(self) -> None:
        """Drop the remembered verdict: the next request checks again (after a known change of state)."""
        with self._verdict_lock:
            self._verdict = None

    def _check(self) -> list[str]:
        runs = self._start()
        deadline = time.monotonic() + self._deadline_s
        for run in runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        found = []
        for run in runs:
            if not run.done.is_set():
                found.append(f"{run.name}: no answer within {self._deadline_s:g} s")
            elif run.problem:
                found.append(run.problem)
        if found:
            log.warning("health: %s", "; ".join(found))
        return found

    def _start(self) -> list[_Run]:
        """A run per check: the one still in flight from an earlier request, or a new one."""
        with self._lock:
            for name, check in self._checks.items():
                current = self._running.get(name)
                if current is None or current.done.is_set():
                    self._running[name] = _Run(name, check)
            return list(self._running.values())
