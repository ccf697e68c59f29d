"""`python -m app_tier`: run one worker on this instance."""
from __future__ import annotations

import logging
import sys

from sightfleet.aws.ec2 import instance_id_from_metadata
from sightfleet.config import settings_or_exit
from sightfleet.logs import setup_logging
from sightfleet.resources import Resources

log = logging.getLogger("app_tier")


def main() -> int:
    settings = settings_or_exit(log)
    instance_id = settings.instance_id or (None if settings.is_local else instance_id_from_metadata())
    setup_logging("worker", instance_id or "standalone")
    if not instance_id:
        log.info("no instance id: running standalone, will not terminate any instance when idle")
    from app_tier.pipeline import Pipeline, PipelineSettings
    from app_tier.worker import Worker

    def pipeline_factory():
        return Pipeline(PipelineSettings.from_settings(settings))

    worker = Worker(Resources.connect(settings), pipeline_factory, instance_id or "standalone",
                    can_terminate=bool(instance_id))
    worker.work()
    return 0


if __name__ == "__main__":
    sys.exit(main())
