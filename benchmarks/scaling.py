"""Scaling: a burst of N images into an empty local fleet, timed until the fleet is back at zero; then a
second burst into the warm pool the first one left (workers hibernated, not terminated).

Starts its own local AWS endpoint (moto) on a free port and a fresh stack, runs the controller
and the local EC2 host in-process (the workers are real `python -m app_tier` processes), submits
N photos through the web tier's submit path at once, and counts the live instances twenty times a
second on a thread of its own (results and heartbeats four times a second).
It prints, from the start of the burst (submitted on a thread while the sampler runs):
- time until the whole burst is in the queue, and to the first live instance (the controller's reaction),
- time to the first worker polling (launch + process start; the models load meanwhile) and first result,
- time to the full fleet (the cap, or the largest fleet seen),
- drain time (every result final) and time back to zero instances,
- instance-seconds used per 100 images against the ideal: the sum of the results' service
  times (timings.total), i.e. what perfectly packed workers with no start-up or idle grace use.
  Only running (and pending) instances count: a stopped one in the pool is not billed for compute.
"Back to zero" is zero live instances; with a pool they are stopped there, their processes frozen.
The warm burst is the same N images once the whole fleet is in the pool (`--warm-pool 0`: no
pool, workers terminate after the idle grace as before, and the second burst is cold too).
It also times SQS round trips on the same endpoint, so the emulator's share is visible, and ends with
the command that models the run in benchmarks/fleet_sim.py --local (the model's check against it).

    .venv/bin/python benchmarks/scaling.py [--images 40] [--max-instances 4] [--idle-grace 6] \
        [--warm-pool 4] [--pool-grace 2]
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from controller.loop import Controller  # noqa: E402
from controller.observe import service_ms  # noqa: E402
from devstack.local_host import LocalHost  # noqa: E402
from sightfleet.aws.dynamodb import HEARTBEAT_KIND  # noqa: E402
from sightfleet.config import Settings  # noqa: E402
from sightfleet.contracts import FINAL_STATUSES, epoch  # noqa: E402
from sightfleet.deploy.templates import instance_environment  # noqa: E402
from sightfleet.errors import SightfleetError  # noqa: E402
from sightfleet.fleet_nudge import local_host_address  # noqa: E402
from sightfleet.interfaces import DECISION_KIND, POOLED_STATES  # noqa: E402
from sightfleet.logs import setup_logging  # noqa: E402
from sightfleet.resources import Resources, provision  # noqa: E402
from testkit.photos import jpeg_bytes  # noqa: E402
from testkit.stack import start_moto  # noqa: E402
from web_tier.submit import Submitter, Upload  # noqa: E402

log = logging.getLogger("scaling")
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
SAMPLE_S = 0.25
FLEET_SAMPLE_S = 0.05
TIMEOUT_S = 600


@dataclass
class Timeline:
    """What the sampler saw, in seconds since the burst started."""

    submitted: float | None = None       # the whole burst is in the queue
    first_instance: float | None = None  # EC2 lists the first live instance (launched or started)
    first_polling: float | None = None
    first_result: float | None = None
    full_fleet: float | None = None
    drained: float | None = None
    zero: float | None = None
    peak: int = 0
    instance_s: float = 0.0
    worker_rss_mb: dict = field(default_factory=dict)  # peak resident memory of each worker process
    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, t: float, live: int) -> None:
        if self.samples:
            last_t, last_live = self.samples[-1]
            self.instance_s += last_live * (t - last_t)
        self.samples.append((t, live))
        if live and self.first_instance is None:
            self.first_instance = t
        if live > self.peak:
            self.peak, self.full_fleet = live, t


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def emulator_round_trip_ms(resources, count: int = 30) -> float:
    """Median SQS GetQueueAttributes round trip on the local endpoint, in ms."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        resources.requests.counts()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def submit_burst(resources, count: int, photos: dict[str, bytes]) -> list[str]:
    submitter = Submitter(resources, resources.settings.max_upload_bytes)
    return [submitter.submit(Upload(photos[PHOTOS[n % len(PHOTOS)]], f"burst-{n}.jpg", "bench"))["id"]
            for n in range(count)]


def polling_since(resources, since_epoch: float) -> bool:
    """Whether some worker has said idle or busy since then (a resumed one beats at once)."""
    return any(doc.get("state") in ("idle", "busy") and (epoch(doc.get("last_heartbeat")) or 0) >= since_epoch
               for doc in resources.fleet_log.all(HEARTBEAT_KIND))


def watch(resources, host: LocalHost, submitting: Future, count: int, started: float,
          since_epoch: float) -> tuple[Timeline, list[dict]]:
    """Sample the fleet, heartbeats and results (once the burst is in) until all are final and no instance is live."""
    timeline = Timeline()
    sampling = threading.Event()
    sampler = threading.Thread(target=sample_fleet, args=(resources, timeline, started, sampling), daemon=True)
    sampler.start()
    try:
        return _watch(resources, host, submitting, count, started, since_epoch, timeline)
    finally:
        sampling.set()
        sampler.join()


def sample_fleet(resources, timeline: Timeline, started: float, done: threading.Event) -> None:
    """Count live instances every FLEET_SAMPLE_S on a thread of its own, so that the instance-seconds
    do not depend on how long the results' reads take (a coarse sampling misses the fleet's edges)."""
    while True:
        t = time.monotonic() - started
        try:
            timeline.add(t, len(resources.fleet.instances()))
        except SightfleetError as exc:   # one failed listing: the next sample closes the gap
            log.warning("fleet sample at %.2f s failed: %s", t, exc)
        if done.wait(FLEET_SAMPLE_S):
            break


def _watch(resources, host: LocalHost, submitting: Future, count: int, started: float, since_epoch: float,
           timeline: Timeline) -> tuple[Timeline, list[dict]]:
    results, ids = [], None
    while not timeline.samples:
        if time.monotonic() - started > TIMEOUT_S:
            raise TimeoutError("the fleet sampler took no sample")
        time.sleep(0.01)
    with tqdm(total=count, desc="results", unit="img") as bar:
        while time.monotonic() - started < TIMEOUT_S:
            t = time.monotonic() - started
            for pid in host.pids().values():
                timeline.worker_rss_mb[pid] = max(timeline.worker_rss_mb.get(pid, 0.0), rss_mb(pid))
            if timeline.first_polling is None and polling_since(resources, since_epoch):
                timeline.first_polling = t
            if ids is None and submitting.done():
                ids, timeline.submitted = submitting.result(), t
            if ids is None:
                time.sleep(SAMPLE_S)
                continue
            if timeline.drained is None:
                results = resources.results.get_many(ids)
                done = sum(r["status"] in FINAL_STATUSES for r in results)
                if done and timeline.first_result is None:
                    timeline.first_result = t
                bar.update(done - bar.n)
                bar.set_postfix(instances=timeline.samples[-1][1])
                if done == len(ids):
                    timeline.drained = t
            elif timeline.samples[-1][1] == 0:
                timeline.zero = timeline.samples[-1][0]   # when the sampler saw it, not this loop
                return timeline, results
            time.sleep(SAMPLE_S)
    raise TimeoutError(f"no empty fleet within {TIMEOUT_S} s")


def wait_pooled(resources, count: int) -> None:
    """Until `count` instances are stopped in the pool, so that the next burst finds a warm pool."""
    deadline = time.monotonic() + 60
    while len(resources.fleet.instances(states=POOLED_STATES)) < count and time.monotonic() < deadline:
        time.sleep(SAMPLE_S)


def busy_s(results: list[dict]) -> float:
    """Seconds the workers were busy: per instance, the union of its results' claim-to-final spans.

    A worker overlaps its images (one is decoded while the models run on another), so this is
    less than the sum of their timings.total; it is what a model of one-after-the-other workers
    (benchmarks/fleet_sim.py --local) takes as the time per image.
    """
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        start, end = epoch(r.get("started_at")), epoch(r.get("completed_at"))
        if r.get("instance_id") and start is not None and end is not None:
            spans.setdefault(r["instance_id"], []).append((start, end))
    total = 0.0
    for intervals in spans.values():
        reach = None
        for start, end in sorted(intervals):
            if reach is None or start > reach:
                total, reach = total + end - start, end
            elif end > reach:
                total, reach = total + end - reach, end
    return total


def report(args, what: str, timeline: Timeline, results: list[dict], round_trip_ms: float) -> dict:
    service_s = sum(ms for ms in map(service_ms, results) if ms) / 1000
    per_100 = 100 / len(results)
    used, ideal = timeline.instance_s * per_100, service_s * per_100

    def at(value: float | None) -> str:
        return "never" if value is None else f"{value:6.1f} s"
    print(f"\n{what}: burst of {len(results)} images, cap {args.max_instances}, idle grace {args.idle_grace:.0f} s, "
          f"warm pool {args.warm_pool} (pool grace {args.pool_grace:.0f} s), tick {args.tick:.1f} s")
    print(f"burst submitted       {at(timeline.submitted)}")
    print(f"first instance live   {at(timeline.first_instance)}")
    print(f"first worker polling  {at(timeline.first_polling)}")
    print(f"first result          {at(timeline.first_result)}")
    print(f"full fleet ({timeline.peak:2d})       {at(timeline.full_fleet)}")
    print(f"drained               {at(timeline.drained)}")
    print(f"back to zero          {at(timeline.zero)}")
    print(f"instance-seconds/100  {used:6.1f} s used, {ideal:6.1f} s ideal (sum of timings.total): "
          f"ratio {used / ideal if ideal else float('nan'):.1f}x")
    rss = sorted(timeline.worker_rss_mb.values())
    if rss:
        print(f"worker memory         {rss[-1]:6.0f} MiB peak RSS (median {statistics.median(rss):.0f} MiB "
              f"over {len(rss)} workers)")
    print(f"emulator              {round_trip_ms:6.1f} ms per SQS round trip (median of 30)")
    busy_per_image = busy_s(results) / len(results)
    print(f"workers busy          {busy_per_image * 1000:6.0f} ms per image (claim to final, overlaps merged)")
    return {"first_poll": timeline.first_polling, "busy_per_image": busy_per_image, "submitted": timeline.submitted}


def print_model_check(args, runs: list[dict]) -> None:
    """The fleet simulator's command that models this run from its own primitives (see fleet_sim.py --local)."""
    if len(runs) < 2 or runs[0]["first_poll"] is None:
        return
    print("\nmodel check: .venv/bin/python benchmarks/fleet_sim.py --local "
          f"--local-images {args.images} --local-cap {args.max_instances} --local-idle-grace {args.idle_grace:g} "
          f"--local-pool-grace {args.pool_grace:g} --local-first-poll {runs[0]['first_poll']:.2f} "
          f"--local-service {runs[0]['busy_per_image']:.3f} {runs[1]['busy_per_image']:.3f} "
          f"--local-submit {runs[0]['submitted']:.2f} {runs[1]['submitted']:.2f}")


def run(args) -> None:
    moto, url = start_moto()
    stop = threading.Event()
    threads = []
    try:
        settings = Settings(endpoint_url=url, prefix=f"scale-{uuid.uuid4().hex[:8]}", max_instances=args.max_instances,
                            idle_grace_s=args.idle_grace, controller_tick_s=args.tick,
                            warm_pool_size=args.warm_pool, pool_grace_s=args.pool_grace)
        provision(settings)
        resources = Resources.connect(settings)
        round_trip_ms = emulator_round_trip_ms(resources)
        env = {**os.environ, **instance_environment(settings), "PYTHONUNBUFFERED": "1",
               "SIGHTFLEET_LOG_LEVEL": "INFO" if args.verbose else "WARNING"}
        # Nudged by every launch and start, as the stack's host is (sightfleet/aws/ec2.py).
        host = LocalHost(resources.fleet, env, listen=local_host_address(settings))
        threads = [threading.Thread(target=host.run, args=(stop,)),
                   threading.Thread(target=Controller(resources, settings).run, args=(stop,))]
        for thread in threads:
            thread.start()
        # The bursts find a controller already ticking, as a running stack's would be.
        deadline = time.monotonic() + 60
        while not resources.fleet_log.all(DECISION_KIND) and time.monotonic() < deadline:
            time.sleep(SAMPLE_S)
        photos = {name: jpeg_bytes(name) for name in PHOTOS}   # encoded before the clock starts
        runs = []
        for what in ("cold", "warm" if args.warm_pool else "cold again"):
            started, since = time.monotonic(), time.time()
            with ThreadPoolExecutor(1) as submitter:   # sampling starts with the burst, not after it
                submitting = submitter.submit(submit_burst, resources, args.images, photos)
                timeline, results = watch(resources, host, submitting, args.images, started, since)
            runs.append(report(args, what, timeline, results, round_trip_ms))
            if args.warm_pool:
                wait_pooled(resources, min(args.warm_pool, timeline.peak))
        if args.warm_pool:
            print_model_check(args, runs)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        moto.terminate()
        moto.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--max-instances", type=int, default=4)
    parser.add_argument("--idle-grace", type=float, default=6.0)
    parser.add_argument("--warm-pool", type=int, default=None, help="pool size (default: the cap; 0: no pool)")
    parser.add_argument("--pool-grace", type=float, default=2.0, help="idle seconds before a worker goes to the pool")
    parser.add_argument("--tick", type=float, default=1.0)
    parser.add_argument("--verbose", action="store_true", help="show controller, host and worker logs")
    args = parser.parse_args()
    args.warm_pool = args.max_instances if args.warm_pool is None else args.warm_pool
    setup_logging("scaling")
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
