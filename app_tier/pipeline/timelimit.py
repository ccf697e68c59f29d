"""A time budget per image, enforced by SIGALRM where possible and checked between stages always.

Limits of the alarm: it only works in the main thread of a process on POSIX (elsewhere the
budget is still checked between stages, but a stage that hangs is not interrupted); Python
delivers the signal between bytecodes, so C code (one libjpeg or zlib call, one forward pass)
runs to its end before the interruption. Pillow decodes in a Python loop over 64 KiB chunks
and exifread is pure Python, so both are interrupted promptly.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

from app_tier.pipeline.errors import TIMEOUT, StageError


class _Alarm(BaseException):
    """Raised by the SIGALRM handler; a BaseException so `except Exception` in libraries lets it pass."""


class Budget:
    """Seconds one image may spend in its own stages; time spent waiting on others is not charged."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.spent = 0.0

    @property
    def remaining(self) -> float:
        return self.seconds - self.spent

    @property
    def unlimited(self) -> bool:
        return self.seconds <= 0

    def exceeded(self, stage: str) -> StageError:
        return StageError(TIMEOUT, f"processing took longer than the {self.seconds:g} s allowed per image "
                                   f"(stopped in the {stage} stage)")


def _alarm_usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _raise_alarm(signum, frame):
    raise _Alarm()


@contextmanager
def charged(budget: Budget, stage: str):
    """Run a block on the image's budget: StageError(TIMEOUT) if it runs out, before, during or after."""
    if budget.unlimited:
        yield
        return
    if budget.remaining <= 0:
        raise budget.exceeded(stage)
    started = time.perf_counter()
    try:
        if _alarm_usable():
            with _alarm_after(budget.remaining):
                yield
        else:
            yield
    except _Alarm:
        raise budget.exceeded(stage) from None
    finally:
        budget.spent += time.perf_counter() - started
    if budget.remaining <= 0:
        raise budget.exceeded(stage)


@contextmanager
def _alarm_after(seconds: float):
    """SIGALRM after `seconds`; restores whatever handler and timer were there before."""
    previous_handler = signal.signal(signal.SIGALRM, _raise_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        _disarm()
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            left = max(previous_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


def _disarm() -> None:
    """Stop the one-shot timer; an alarm landing right now is dropped (the budget check catches it)."""
    while True:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        except _Alarm:
            continue
