"""`python -m sightfleet.provision`: create the stack's queues, buckets and tables (idempotent)."""
from __future__ import annotations

import logging
import sys

from sightfleet.config import ConfigError, Settings
from sightfleet.errors import SightfleetError
from sightfleet.local_access import use_local_aws_env
from sightfleet.logs import setup_logging
from sightfleet.resources import provision

log = logging.getLogger("sightfleet.provision")


def main() -> int:
    setup_logging("provision")
    use_local_aws_env()
    try:
        settings = Settings.from_env()
        provision(settings)
    except (ConfigError, SightfleetError) as exc:
        log.error("provisioning failed: %s", exc)
        return 1
    where = settings.endpoint_url or f"AWS {settings.region}"
    log.info("stack %s is ready on %s", settings.prefix, where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
