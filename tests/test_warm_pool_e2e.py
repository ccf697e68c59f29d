"""The warm pool end to end, on the stack as scripts/run starts it: a burst, the fleet into the pool, a second burst.

The fleet goes to the pool (EC2 lists every worker stopped, their processes frozen in state T
and using no CPU) and the second burst is served by the very same worker processes, resumed.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from sightfleet.aws.ec2 import Fleet
from sightfleet.config import Settings
from testkit.chaos import worker_pids_by_instance
from tests.support import AWS_TEST_ENV, alive, jpeg_bytes, start_stack, tree_cpu_ms, wait_for

pytestmark = pytest.mark.e2e

CAP = 2
BURST = 8
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def burst(stack, count: int) -> list[str]:
    """Upload count photos; returns their status URLs."""
    photos = {name: jpeg_bytes(name, 0.5) for name in PHOTOS}
    urls = []
    for n in range(count):
        name = PHOTOS[n % len(PHOTOS)]
        reply = stack.post("/api/images", timeout=30,
                           files={"file": (f"{name}-{n}.jpg", photos[name], "image/jpeg")})
        assert reply.status_code == 202, reply.text
        urls.append(stack.web_url + reply.json()["images"][0]["status_url"])
    return urls


def results(stack, urls: list[str]):
    stack.track()
    found = [requests.get(url, headers=stack.headers, timeout=10).json() for url in urls]
    return found if all(r["status"] in ("SUCCEEDED", "FAILED") for r in found) else None


def test_a_second_burst_is_served_by_the_same_worker_processes_resumed_from_the_pool(tmp_path, monkeypatch):
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)   # the run's test pair, which the stack is given too (tests/support.py)
    stack = start_stack(tmp_path, SIGHTFLEET_MAX_INSTANCES=str(CAP), SIGHTFLEET_WARM_POOL_SIZE=str(CAP),
                        SIGHTFLEET_IDLE_GRACE_S="30", SIGHTFLEET_POOL_GRACE_S="3", SIGHTFLEET_CONTROLLER_TICK_S="1",
                        SIGHTFLEET_TARGET_BACKLOG_PER_INSTANCE=str(BURST // CAP))
    fleet = Fleet(Settings(endpoint_url=stack.aws_url, prefix=stack.prefix))
    every = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")
    try:
        urls = burst(stack, BURST)
        first = wait_for(lambda: results(stack, urls), 240, 1, "the first burst's results")
        assert {r["status"] for r in first} == {"SUCCEEDED"}

        def pooled():
            listed = fleet.instances(states=every)
            return listed if listed and all(i.state == "stopped" for i in listed) else None
        instances = wait_for(pooled, 60, 0.5, "every worker stopped into the pool")
        ids = {i.id for i in instances}
        assert {r["instance_id"] for r in first} <= ids and len(ids) <= CAP
        pids = wait_for(lambda: (found := worker_pids_by_instance(stack)) and set(found) == ids
                        and all(proc_state(p) == "T" for p in found.values()) and found, 20, 0.2,
                        "the worker processes frozen (state T)")
        cpu = {i: tree_cpu_ms(p) for i, p in pids.items()}
        time.sleep(3)
        assert {i: tree_cpu_ms(p) for i, p in pids.items()} == cpu   # frozen: not one tick of CPU
        assert all(alive(p) for p in pids.values())

        urls = burst(stack, BURST)
        second = wait_for(lambda: results(stack, urls), 120, 0.5, "the second burst's results")
        assert {r["status"] for r in second} == {"SUCCEEDED"}
        assert {r["instance_id"] for r in second} <= ids               # no new instance did any of it
        assert {i.id for i in fleet.instances(states=every)} == ids     # and none was launched
        assert worker_pids_by_instance(stack) == pids   # the same processes, models loaded once
        log = stack.log_text()
        assert "into the warm pool (hibernating)" in log and "started again from the warm pool" in log
    except BaseException:
        print(stack.log_text()[-8000:])
        raise
    finally:
        code = stack.stop()
    assert code == 0, stack.log_text()[-4000:]
    left = [pid for pid in stack.seen_pids if alive(pid)]
    assert not left, f"processes left behind: {left}"
