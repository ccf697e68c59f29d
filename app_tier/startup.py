"""A cold worker's start-up: the models loaded on a thread of their own while it already polls, and its phases timed.

The first long poll needs only the queue and the fleet table; the models (about 1 s from the
cached IR, more with several workers starting on two cores) load meanwhile. A job received
before they are ready waits for them: its claim and fetch are already under way by then.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)
# While the models load, a poll returns within this, so that a worker whose models fail to load
# ends promptly instead of looking idle for a whole long poll.
LOADING_POLL_S = 1


def process_started_at() -> float:
    """When this process started (epoch s), from the kernel's count; now where /proc cannot tell."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up_s = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.time()
    return time.time() - max(0.0, up_s - started_ticks / ticks)


class StartupClock:
    """Seconds from the process's start to each start-up phase, said in one log line each time it matters."""

    def __init__(self, origin: float | None = None):
        self.origin = process_started_at() if origin is None else origin
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> float:
        """Record that a phase ended now; returns its time since the process started."""
        self.phases[phase] = round(time.time() - self.origin, 3)
        return self.phases[phase]

    def summary(self) -> str:
        return ", ".join(f"{phase} {at:.2f} s" for phase, at in self.phases.items())


class LoadingPipeline:
    """The pipeline, loaded on its own thread from the moment this is made; reading any attribute waits for it.

    A pipeline that failed to load raises its error again on the reading thread.
    """

    def __init__(self, factory: Callable[[], object], clock: StartupClock | None = None):
        self.load_seconds: float | None = None
        self._clock = clock
        self._loaded = threading.Event()
        self._pipeline = None
        self._error: BaseException | None = None
        # Started by the caller's thread, at its priority: the models' own thread inherits it.
        self._thread = threading.Thread(target=self._load, args=(factory,), name="load-models", daemon=True)
        self._thread.start()

    def _load(self, factory: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            self._pipeline = factory()
        except BaseException as exc:  # noqa: BLE001 - raised again on the thread that needs the models
            self._error = exc
            log.error("the models failed to load: %s", exc, exc_info=True)
        else:
            self.load_seconds = round(time.monotonic() - started, 3)
            since = f", {self._clock.mark('models loaded'):.2f} s after the process started" if self._clock else ""
            log.info("models loaded in %.2f s%s", self.load_seconds, since)
        finally:
            self._loaded.set()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self._error is None

    @property
    def failed(self) -> BaseException | None:
        """The error the load ended with, once it has ended so; None while loading or loaded."""
        return self._error if self._loaded.is_set() else None

    def wait(self):
        """The pipeline, once loaded; raises what the load raised."""
        self._loaded.wait()
        if self._error is not None:
            raise self._error
        return self._pipeline

    def __getattr__(self, name: str):
        # Only attributes this class lacks get here: the pipeline's own, read by BatchRunner.
        return getattr(self.wait(), name)
