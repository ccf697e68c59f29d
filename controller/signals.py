"""SIGTERM/SIGINT handling shared by the controller's entry points."""
from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def stop_event_on_signals() -> threading.Event:
    """An event that SIGTERM or SIGINT sets, so a loop can finish its round and exit cleanly."""
    stop = threading.Event()

    def request_stop(signum, _frame):
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop
