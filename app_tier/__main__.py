"""`python -m app_tier`: run one worker on this instance."""
from __future__ import annotations

import logging
import sys

from sightfleet.aws.ec2 import instance_id_from_metadata
from sightfleet.config import settings_or_exit
from sightfleet.logs import setup_logging
from sightfleet.procs import FEEDER_NICE, lower_priority
from sightfleet.resources import Resources

log = logging.getLogger("app_tier")


def main() -> int:
    settings = settings_or_exit(log)
    instance_id = settings.instance_id or (None if settings.is_local else instance_id_from_metadata())
    setup_logging("worker", instance_id or "standalone")
    if not instance_id:
        log.info("no instance id: running standalone, will not terminate any instance when idle")
    from app_tier.worker import Worker

    worker = Worker(Resources.connect(settings), lambda: load_pipeline(settings), instance_id or "standalone",
                    can_terminate=bool(instance_id))
    try:
        worker.work()
    except Exception:  # noqa: BLE001 - logged with its traceback by the worker; a crash exits non-zero
        return 1
    return 0


def load_pipeline(settings):
    """The models, loaded on their own thread at normal priority; this thread then yields to them.

    This (main) thread only prepares the images the models take next and finishes those they
    are done with; when the cores are busy the models, which set the pace, should run first.
    """
    from app_tier.pipeline import Pipeline, PipelineSettings
    pipeline = Pipeline(PipelineSettings.from_settings(settings))
    lower_priority(FEEDER_NICE)
    return pipeline


if __name__ == "__main__":
    sys.exit(main())
