"""`python -m controller`: run the fleet controller until SIGTERM or SIGINT.

`python -m controller ops ...`: the operators' actions (controller/ops_cli.py).
"""
from __future__ import annotations

import logging
import re
import sys

from controller.loop import Controller
from sightfleet.config import Settings, settings_or_exit
from sightfleet.local_access import use_local_aws_env
from sightfleet.logs import setup_logging
from sightfleet.procs import stop_event_on_signals
from sightfleet.resources import Resources

log = logging.getLogger("controller")
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$")


def launch_problem(settings: Settings) -> str | None:
    """Why workers launched with these settings could not work on AWS, or None when they can.

    Checked before the first tick: without a real image every launch fails, and without an
    instance profile every worker starts, finds no credentials, crashes and is replaced, at cost.
    A launch template carries image and profile itself. Local endpoints accept anything.
    """
    if settings.is_local or settings.launch_template:
        return None
    if not _AMI_ID.match(settings.image_id):
        return (f"SIGHTFLEET_IMAGE_ID={settings.image_id!r} is not an AMI id: set it to an image baked with "
                "ami/packer, or set SIGHTFLEET_LAUNCH_TEMPLATE (scripts/deploy makes <prefix>-worker)")
    if not settings.instance_profile:
        return (f"SIGHTFLEET_INSTANCE_PROFILE is not set: workers would start without credentials and crash-loop; "
                f"set it to {settings.names.role_name('worker')}, or set SIGHTFLEET_LAUNCH_TEMPLATE")
    return None


def main() -> int:
    setup_logging("controller")
    use_local_aws_env()   # run by hand beside scripts/run: its endpoint and credentials
    if sys.argv[1:2] == ["ops"]:
        from controller.ops_cli import main as ops_main   # only the CLI needs tqdm and argparse
        return ops_main(sys.argv[2:])
    settings = settings_or_exit(log)
    problem = launch_problem(settings)
    if problem:
        log.error("refusing to start: %s", problem)
        return 2
    stop = stop_event_on_signals()
    Controller(Resources.connect(settings), settings).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
