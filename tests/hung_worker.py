"""`python -m tests.hung_worker`: a real worker process whose pipeline hangs in C code on its first image.

For tests of the watchdog (tests/test_worker_watchdog.py): the main thread blocks inside libc's
sleep(), where no Python signal handler or alarm can reach it, exactly as a hung model pass would.
"""
from __future__ import annotations

import ctypes
import sys

from app_tier.worker import Worker
from sightfleet.config import Settings
from sightfleet.logs import setup_logging
from sightfleet.resources import Resources


class HungPipeline:
    """The pipeline's interface; its first forward pass never returns."""

    AHEAD = 2

    def chunks(self, items):
        for item in items:
            yield [item]

    def submit(self, inputs):
        ctypes.CDLL(None).sleep(3600)

    def collect(self, pending):
        raise AssertionError("never reached")


def main() -> int:
    settings = Settings.from_env()
    setup_logging("worker", settings.instance_id)
    Worker(Resources.connect(settings), HungPipeline, settings.instance_id).work()
    return 0


if __name__ == "__main__":
    sys.exit(main())
