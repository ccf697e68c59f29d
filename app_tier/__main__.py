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
from sightfleet.local_access import use_local_aws_env
from sightfleet.logs import setup_logging
from sightfleet.procs import FEEDER_NICE
from sightfleet.resources import Resources

log = logging.getLogger("app_tier")


def main() -> int:
    startup = StartupClock()
    startup.mark("imports")
    use_local_aws_env()   # run by hand beside scripts/run: its endpoint and credentials
    settings = settings_or_exit(log)
    instance_id = settings.instance_id or (None if settings.is_local else instance_id_from_metadata())
    setup_logging("worker", instance_id or "standalone")
    if not instance_id:
        log.info("no instance id: running standalone, will not terminate any instance when idle")
    startup.mark("settings")
    resources = Resources.connect(settings)
    startup.mark("clients")
    # The models load after the clients: both are mostly Python (imports, botocore's service models)
    # and would share the GIL; the first poll needs only the clients.
    feeder = threading.get_native_id()   # this thread: it prepares the images the models take
    models = LoadingPipeline(lambda: load_pipeline(settings, feeder), startup)
    worker = Worker(resources, models, instance_id or "standalone",
                    can_terminate=bool(instance_id), startup=startup)
    try:
        worker.work()
    except Exception:  # noqa: BLE001 - logged with its traceback by the worker; a crash exits non-zero
        return 1
    return 0


def load_pipeline(settings, feeder_thread: int):
    """The models, loaded on this thread at its priority; the feeder thread (by native id) then yields to them.

    The feeder only prepares the images the models take next and finishes those they are done
    with; when the cores are busy the models, which set the pace, should run first. It is lowered
    from here, once the models exist: lowered earlier, it would have handed its priority on to the
    threads it starts, this loading one among them.
    """
    from app_tier.pipeline import Pipeline, PipelineSettings
    pipeline = Pipeline(PipelineSettings.from_settings(settings))
    _lower_thread(feeder_thread, FEEDER_NICE)
    return pipeline


def _lower_thread(native_id: int, nice: int) -> None:
    """One thread of this process at `nice` (Linux schedules threads one by one), never higher; best effort."""
    try:
        os.setpriority(os.PRIO_PROCESS, native_id, max(nice, os.getpriority(os.PRIO_PROCESS, native_id)))
    except OSError as exc:
        log.debug("thread priority unchanged: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
