"""Logging set-up for the command-line entry points (libraries only call getLogger)."""
from __future__ import annotations

import logging

from sightfleet.config import ConfigError, Settings


class _InstanceFilter(logging.Filter):
    """Stamps the instance id on every record so interleaved worker logs stay readable."""

    def __init__(self, instance_id: str):
        super().__init__()
        self.instance_id = instance_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance_id = self.instance_id
        return True


def setup_logging(component: str, instance_id: str | None = None) -> None:
    """Log to stderr with the component and, for workers, the instance id on every line."""
    level = _configured_level()
    handler = logging.StreamHandler()
    handler.addFilter(_InstanceFilter(instance_id or "-"))
    tag = f"{component} %(instance_id)s" if instance_id else component
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{tag}] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # exifread warns once per broken tag: a hostile file could fill the log; the pipeline logs one line per image.
    logging.getLogger("exifread").setLevel(max(logging.ERROR, root.level))


def _configured_level() -> str:
    """SIGHTFLEET_LOG_LEVEL through Settings; the default while the configuration is malformed, so the entry
    point can still log what is wrong with it (settings_or_exit)."""
    try:
        return Settings.from_env().log_level.upper()
    except ConfigError:
        return Settings.log_level
