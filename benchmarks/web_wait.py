"""Synchronous waits: 100 requests each polling the results table vs one batched poller per process.

Run: .venv/bin/python benchmarks/web_wait.py [--waiters 100] [--rate 20]

Against a local moto server (started here), N results are created QUEUED, N threads wait for
one each (as N concurrent `POST /` requests do), and a "fleet" thread finishes them at a fixed
rate the way workers do (`ResultsTable.finish`). For each strategy it prints the table reads the
waiters made, how late waiters woke after their result was written, and how long the fleet's
writes took while the waiters polled (what the workers feel). Ratios are per-request / batched.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from sightfleet.config import Settings  # noqa: E402
from sightfleet.contracts import FINAL_STATUSES, SUCCEEDED, Job, new_image_id, queued_result, utc_now  # noqa: E402
from sightfleet.resources import Resources, provision  # noqa: E402
from testkit.procs import unique_prefix  # noqa: E402
from testkit.stack import start_moto  # noqa: E402
from web_tier.waiting import ResultWaiter  # noqa: E402


class CountingResults:
    """The results table with a count of the batch reads made through it."""

    def __init__(self, results):
        self._results = results
        self.reads = 0
        self._lock = threading.Lock()

    def get_many(self, image_ids):
        with self._lock:
            self.reads += 1
        return self._results.get_many(image_ids)


def per_request_wait(results, image_ids, timeout_s, poll_s=0.25):
    """The first web tier's strategy: every request polls its own ids, backing off to 2 s."""
    deadline, delay = time.monotonic() + timeout_s, poll_s
    while time.monotonic() < deadline:
        found = results.get_many(image_ids)
        if len(found) == len(image_ids) and all(r["status"] in FINAL_STATUSES for r in found):
            return found
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    return None


def queued(resources, count: int) -> list[dict]:
    docs = []
    for _ in range(count):
        job = Job(id=new_image_id(), album="bench", filename="b.jpg", content_type="image/jpeg",
                  submitted_at=utc_now(), size=1, inline_b64="")
        doc = queued_result(job)
        resources.results.create(doc)
        docs.append(doc)
    return docs


def run(resources, strategy: str, waiters: int, rate: float) -> dict:
    """One round: waiters wait, the fleet finishes at `rate` per second; returns the measurements."""
    docs = queued(resources, waiters)
    counting = CountingResults(resources.results)
    batched = ResultWaiter(counting)
    finished_at, woke_late, write_ms = {}, [], []
    lock = threading.Lock()

    def wait(doc):
        if strategy == "batched":
            got = batched.wait([doc["id"]], 120)
        else:
            got = per_request_wait(counting, [doc["id"]], 120)
        now = time.monotonic()
        assert got and got[0]["status"] == SUCCEEDED
        with lock:
            woke_late.append((now - finished_at[doc["id"]]) * 1000)

    def fleet():
        for doc in docs:
            started = time.monotonic()
            resources.results.finish({**doc, "status": SUCCEEDED, "top_label": "cat", "completed_at": utc_now()})
            done = time.monotonic()
            finished_at[doc["id"]] = done
            write_ms.append((done - started) * 1000)
            time.sleep(max(0.0, 1 / rate - (done - started)))

    threads = [threading.Thread(target=wait, args=(d,)) for d in docs]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # let every waiter settle into its polling rhythm before results arrive
    fleet_thread = threading.Thread(target=fleet)
    fleet_thread.start()
    for thread in threads + [fleet_thread]:
        thread.join()
    elapsed = time.monotonic() - started
    return {"reads": counting.reads, "reads_per_s": counting.reads / elapsed,
            "late_ms_mean": statistics.mean(woke_late), "late_ms_p95": _p95(woke_late),
            "write_ms_mean": statistics.mean(write_ms), "write_ms_p95": _p95(write_ms), "elapsed_s": elapsed}


def _p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="results finished per second")
    args = parser.parse_args()
    proc, url = start_moto()
    try:
        settings = Settings(endpoint_url=url, prefix=unique_prefix("bench"))
        provision(settings)
        resources = Resources.connect(settings)
        rows = {name: run(resources, name, args.waiters, args.rate) for name in ("per-request", "batched")}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"{args.waiters} waiters, results finished at {args.rate:g}/s, local moto endpoint")
    fields = ("reads", "reads_per_s", "late_ms_mean", "late_ms_p95", "write_ms_mean", "write_ms_p95", "elapsed_s")
    print(f"{'':22}" + "".join(f"{name:>14}" for name in rows) + f"{'ratio':>10}")
    for field in fields:
        a, b = rows["per-request"][field], rows["batched"][field]
        print(f"{field:22}{a:14.1f}{b:14.1f}{a / b if b else float('inf'):10.2f}")


if __name__ == "__main__":
    main()
