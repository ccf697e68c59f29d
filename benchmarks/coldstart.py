"""Cold start of one worker: from RunInstances to its first poll, and to the first result of a job already queued.

Starts its own local AWS endpoint (moto) and a local EC2 host in-process (nudged by each launch,
as the stack's is), queues one photo, launches one instance, and times from the RunInstances
call to the worker's first heartbeat that says it polls (idle or busy) and to the job's final
result; then terminates the instance and repeats on a fresh stack (a worker stopped during its long
poll leaves the server's half of it open: a message sent within its remaining wait would go to
the dead connection and reappear only after the visibility timeout). The worker's own log line gives the phases
(imports, settings, clients, first poll, models loaded) since its process started; with
--verbose they are shown.

    .venv/bin/python benchmarks/coldstart.py [--runs 3] [--verbose]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from benchmarks.scaling import polling_since  # noqa: E402
from devstack.local_host import LocalHost  # noqa: E402
from sightfleet.config import Settings  # noqa: E402
from sightfleet.contracts import FINAL_STATUSES  # noqa: E402
from sightfleet.deploy.templates import instance_environment  # noqa: E402
from sightfleet.fleet_nudge import local_host_address  # noqa: E402
from sightfleet.logs import setup_logging  # noqa: E402
from sightfleet.resources import Resources, provision  # noqa: E402
from testkit.photos import jpeg_bytes  # noqa: E402
from testkit.stack import start_moto  # noqa: E402
from web_tier.submit import Submitter, Upload  # noqa: E402

SAMPLE_S = 0.02
TIMEOUT_S = 120


def one_cold_start(url: str, photo: bytes, verbose: bool) -> tuple[float, float]:
    """On a fresh stack: seconds from RunInstances to the first poll and to the queued job's result."""
    settings = Settings(endpoint_url=url, prefix=f"cold-{uuid.uuid4().hex[:8]}", max_instances=1, idle_grace_s=600)
    provision(settings)
    resources = Resources.connect(settings)
    env = {**os.environ, **instance_environment(settings), "PYTHONUNBUFFERED": "1",
           "SIGHTFLEET_LOG_LEVEL": "INFO" if verbose else "WARNING"}
    host = LocalHost(resources.fleet, env, listen=local_host_address(settings))
    stop = threading.Event()
    thread = threading.Thread(target=host.run, args=(stop,))
    thread.start()
    try:
        time.sleep(1.0)   # the host has listed once and waits for a nudge
        image_id = Submitter(resources, settings.max_upload_bytes).submit(Upload(photo, "cold.jpg", "bench"))["id"]
        since, started = time.time(), time.monotonic()
        resources.fleet.launch(1, "")
        polled = result = None
        while time.monotonic() - started < TIMEOUT_S and result is None:
            t = time.monotonic() - started
            if polled is None and polling_since(resources, since):
                polled = t
            if resources.results.get(image_id)["status"] in FINAL_STATUSES:
                result = t
            time.sleep(SAMPLE_S)
    finally:
        stop.set()
        thread.join(60)
    if result is None:
        raise TimeoutError(f"no result within {TIMEOUT_S} s")
    return polled if polled is not None else result, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--verbose", action="store_true", help="show the host's and the worker's logs")
    args = parser.parse_args()
    setup_logging("coldstart")
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    moto, url = start_moto()
    try:
        photo = jpeg_bytes("chelsea")
        runs = [one_cold_start(url, photo, args.verbose) for _ in range(args.runs)]
        for n, (polled, result) in enumerate(runs, 1):
            print(f"run {n}: launch -> first poll {polled:5.2f} s, launch -> first result {result:5.2f} s")
        print(f"median: launch -> first poll {statistics.median(r[0] for r in runs):5.2f} s, "
              f"launch -> first result {statistics.median(r[1] for r in runs):5.2f} s ({args.runs} runs)")
    finally:
        moto.terminate()
        moto.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
