"""`python -m controller`: run the fleet controller until SIGTERM or SIGINT."""
from __future__ import annotations

import logging
import sys

from controller.loop import Controller
from controller.signals import stop_event_on_signals
from sightfleet.config import ConfigError, Settings
from sightfleet.logs import setup_logging
from sightfleet.resources import Resources

log = logging.getLogger("controller")


def main() -> int:
    setup_logging("controller")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    stop = stop_event_on_signals()
    Controller(Resources.connect(settings), settings).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
