"""Runs a load: a thread pool of senders, a progress bar, fleet sampling, Ctrl-C handling."""
from __future__ import annotations

import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from tqdm import tqdm

from workload_generator.client import Client
from workload_generator.config import LoadConfig
from workload_generator.fleet import FleetSampler
from workload_generator.images import ImageFile, plan
from workload_generator.report import FleetSample, RequestResult, Summary, summarize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """Everything a run observed, in the order requests started."""

    config: LoadConfig
    results: list[RequestResult]
    fleet: list[FleetSample]
    planned: int
    sent: int
    duration_s: float
    interrupted: bool

    def summary(self, truth: dict[str, str] | None = None) -> Summary:
        """The report's figures, checked against truth (name -> label) when given."""
        return summarize(self.results, planned=self.planned, sent=self.sent, duration_s=self.duration_s,
                         truth=truth, fleet=self.fleet, interrupted=self.interrupted)


def run_workload(config: LoadConfig, images) -> RunRecord:
    """Send config.num_requests images (cycling images) with config.concurrency threads.

    Ctrl-C ends the run early: the record then holds what finished and interrupted is
    True; requests still in flight are abandoned (their threads end on their own).
    """
    work: list[ImageFile] = plan(images, config.num_requests)
    stop = threading.Event()
    origin = time.monotonic()
    client = Client(config, stop, origin)
    sampler = FleetSampler(config.url, config.fleet_interval_s, origin, api_key=config.api_key).start()
    results: list[RequestResult] = []
    interrupted, failed = False, 0
    pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="sender")
    bar = tqdm(total=len(work), file=sys.stderr, unit="img", disable=not config.progress, dynamic_ncols=True)
    try:
        futures = [pool.submit(client.send, image) for image in work]
        for future in as_completed(futures):
            results.append(future.result())
            failed += not results[-1].ok
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: reporting the %s requests that finished", len(results))
    finally:
        duration_s = time.monotonic() - origin
        stop.set()  # wakes threads that wait to retry or poll
        pool.shutdown(wait=not interrupted, cancel_futures=True)
        bar.close()
        fleet = sampler.stop()
    if not interrupted:
        client.close()
    results.sort(key=lambda r: r.started_s)
    return RunRecord(config, results, fleet, len(work), client.sent, duration_s, interrupted)
