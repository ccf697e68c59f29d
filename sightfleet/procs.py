"""Process and thread hygiene: children that die with their parent, background threads that yield, clean stops."""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
# Background threads yield the CPU to the models, the critical path, when cores are scarce;
# a worker's main thread, which prepares the images the models take next, sits in between.
BACKGROUND_NICE = 10
FEEDER_NICE = 5

# Loaded at import: between fork and exec the child only calls into it.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if its parent dies, so nothing outlives the tree."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def lower_priority(nice: int = BACKGROUND_NICE) -> None:
    """Run the calling thread at lower priority (Linux schedules threads individually); best effort.

    Never raises a priority (e.g. a service started at a higher nice value stays there);
    irreversible without privileges, and threads started later inherit it.
    """
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, max(nice, os.getpriority(os.PRIO_PROCESS, thread)))
    except (AttributeError, OSError) as exc:
        log.debug("thread priority unchanged: %s", exc)


def stop_event_on_signals() -> threading.Event:
    """An event that SIGTERM or SIGINT sets, so a loop can finish its round and exit cleanly."""
    stop = threading.Event()

    def request_stop(signum, _frame):
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop
