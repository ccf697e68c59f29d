"""`python -m app_tier`: run one worker on this instance.

Start-up is cut to what the first long poll needs (settings, clients); the models load on a thread
of their own meanwhile (app_tier/startup.py), and the log says when each phase ended.
"""
from __future__ import annotations

import logging
import os
import sys
import threading

from app_tier.startup import LoadingPipeline, StartupClock
from app_tier.worker import Worker
from sightfleet.aws.ec2 import instance_id_from_metadata
from sightfleet.config import settings_or_exit
from sightfleet.logs import setup_logging
from sightfleet.procs import FEEDER_NICE
from sightfleet.resources import Resources

log = logging.getLogger("app_tier")


def main() -> int:
    startup = StartupClock()
    startup.mark("imports")
    settings = settings_or_exit(log)
    instance_id = settings.instance_id or (None if settings.is_local else instance_id_from_metadata())
    setup_logging("worker", instance_id or "standalone")
    if not instance_id:
        log.info("no instance id: running standalone, will not terminate any instance when idle")
    startup.mark("settings")
    # Loading first: the models' compile (C++, ~1 s) overlaps the clients' creation (Python, ~0.25 s).
    models = LoadingPipeline(lambda: load_pipeline(settings), startup)
    resources = Resources.connect(settings)
    startup.mark("clients")
    worker = Worker(resources, models, instance_id or "standalone",
                    can_terminate=bool(instance_id), startup=startup)
    try:
        worker.work()
    except Exception:  # noqa: BLE001 - logged with its traceback by the worker; a crash exits non-zero
        return 1
    return 0


def load_pipeline(settings):
    """The models, loaded on their own thread at normal priority; the main thread then yields to them.

    The main thread only prepares the images the models take next and finishes those they are
    done with; when the cores are busy the models, which set the pace, should run first.
    """
    from app_tier.pipeline import Pipeline, PipelineSettings
    pipeline = Pipeline(PipelineSettings.from_settings(settings))
    _lower_main_thread(FEEDER_NICE)
    return pipeline


def _lower_main_thread(nice: int) -> None:
    """The main thread at `nice` (Linux schedules threads one by one), never higher; best effort.

    Done from the loading thread, once the models exist: lowered earlier, the main thread would
    have handed its priority to the threads it starts, the loading one among them.
    """
    main_thread = threading.main_thread().native_id
    try:
        os.setpriority(os.PRIO_PROCESS, main_thread, max(nice, os.getpriority(os.PRIO_PROCESS, main_thread)))
    except OSError as exc:
        log.debug("main thread priority unchanged: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
