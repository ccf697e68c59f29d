"""`python -m controller`: run the fleet controller until SIGTERM or SIGINT."""
from __future__ import annotations

import logging
import sys

from controller.loop import Controller
from sightfleet.config import settings_or_exit
from sightfleet.logs import setup_logging
from sightfleet.procs import stop_event_on_signals
from sightfleet.resources import Resources

log = logging.getLogger("controller")


def main() -> int:
    setup_logging("controller")
    settings = settings_or_exit(log)
    stop = stop_event_on_signals()
    Controller(Resources.connect(settings), settings).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
