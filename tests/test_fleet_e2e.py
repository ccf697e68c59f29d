"""The elastic fleet end to end on the local endpoint: real controller, real local host, real workers.

Scale 0 -> N -> 0 runs the two entry points as processes, exactly as the stack supervisor does;
the crash test drives in-process Controller and LocalHost objects so it can SIGKILL one worker.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

import pytest

from controller.loop import Controller
from devstack.local_host import LocalHost
from sightfleet.contracts import FINAL_STATUSES, SUCCEEDED
from sightfleet.deploy.templates import instance_environment
from sightfleet.resources import Resources
from tests.support import REPO, alive, descendants, jpeg_bytes, wait_for
from web_tier.submit import Submitter, Upload

pytestmark = pytest.mark.e2e

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
IDLE_GRACE_S = 6


class FleetSampler:
    """Counts the stack's live instances every 0.2 s in the background."""

    def __init__(self, fleet):
        self._fleet = fleet
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "FleetSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.monotonic(), len(self._fleet.instances())))

    @property
    def peak(self) -> int:
        return max((n for _, n in self.samples), default=0)


def stack_env(settings) -> dict[str, str]:
    """The environment the supervisor gives its children: the caller's plus the stack's settings."""
    return {**os.environ, **instance_environment(settings), "PYTHONUNBUFFERED": "1"}


def submit_photos(resources, count: int) -> list[str]:
    submitter = Submitter(resources, resources.settings.max_upload_bytes)
    photos = {name: jpeg_bytes(name) for name in PHOTOS}
    return [submitter.submit(Upload(photos[PHOTOS[n % len(PHOTOS)]], f"photo-{n}.jpg", "fleet"))["id"]
            for n in range(count)]


def all_final(resources, ids: list[str]):
    found = resources.results.get_many(ids)
    return found if len(found) == len(ids) and all(r["status"] in FINAL_STATUSES for r in found) else None


@contextmanager
def process(argv: list[str], env: dict, log_path):
    """A child process whose output goes to log_path; SIGTERM on the way out, and it must exit 0."""
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert code == 0, f"{argv} exited with {code}:\n{log_path.read_text()[-3000:]}"


def test_burst_scales_zero_to_cap_and_back_to_zero(settings_factory, tmp_path):
    settings = settings_factory(max_instances=4, idle_grace_s=IDLE_GRACE_S, controller_tick_s=1.0)
    resources = Resources.connect(settings)
    env = stack_env(settings)
    host_log, controller_log = tmp_path / "local-host.log", tmp_path / "controller.log"
    with process([sys.executable, "-m", "devstack.local_host"], env, host_log) as host, \
            process([sys.executable, "-m", "controller"], env, controller_log), \
            FleetSampler(resources.fleet) as sampler:
        assert not resources.fleet.instances()
        ids = submit_photos(resources, 40)
        try:
            results = wait_for(lambda: all_final(resources, ids), 150, 0.5, "all 40 results")
            drained = time.monotonic()
            wait_for(lambda: not resources.fleet.instances(), IDLE_GRACE_S + 10, 0.2, "the fleet back to zero")
            back_to_zero_s = time.monotonic() - drained
            wait_for(lambda: not descendants(host.pid), 10, 0.2, "every worker process to exit")
        except AssertionError:
            print(host_log.read_text()[-6000:], controller_log.read_text()[-3000:], sep="\n")
            raise
    assert Counter(r["status"] for r in results) == Counter({SUCCEEDED: 40})
    assert sampler.peak == 4, sampler.samples
    retired = [line for line in host_log.read_text().splitlines() if "retiring" in line]
    assert retired, "no worker retired itself"
    print(f"peak {sampler.peak} instances; back to zero {back_to_zero_s:.1f} s after the last result")


def test_worker_killed_mid_batch_loses_no_job_and_writes_one_result_each(settings_factory):
    settings = settings_factory(max_instances=2, idle_grace_s=IDLE_GRACE_S, controller_tick_s=1.0,
                                visibility_timeout_s=10, target_backlog_per_instance=5)
    resources = Resources.connect(settings)
    host = LocalHost(resources.fleet, stack_env(settings), stop_grace_s=10)
    stop = threading.Event()
    threads = [threading.Thread(target=host.run, args=(stop,)),
               threading.Thread(target=Controller(resources, settings).run, args=(stop,))]
    for thread in threads:
        thread.start()
    try:
        ids = submit_photos(resources, 20)
        held = wait_for(lambda: _processing(resources, ids), 90, 0.05, "a worker to start a batch")
        victim = held[0]["instance_id"]
        pid = host.pids()[victim]
        os.kill(pid, signal.SIGKILL)
        # The jobs it still held when it died (it may have finished some in between).
        interrupted = [r["id"] for r in _processing(resources, [r["id"] for r in held])
                       if r["instance_id"] == victim]
        assert interrupted, "the worker was not mid-batch"
        results = wait_for(lambda: all_final(resources, ids), 120, 0.5, "all 20 results")
        wait_for(lambda: not resources.fleet.instances(), IDLE_GRACE_S + 15, 0.2, "the fleet back to zero")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not alive(pid)
    assert Counter(r["status"] for r in results) == Counter({SUCCEEDED: len(ids)})
    by_id = {r["id"]: r for r in results}
    redone = [by_id[i] for i in interrupted]
    assert all(r["attempts"] >= 2 and r["instance_id"] != victim for r in redone), redone
    for result in results:  # the stored JSON is the one final result
        assert json.loads(resources.outputs.get(result["result_key"])) == result
    responses = _responses(resources)
    assert set(responses) == set(ids)
    assert all(len(set(bodies)) == 1 for bodies in responses.values())  # republished, never different


def _processing(resources, ids: list[str]) -> list[dict]:
    """Results some worker holds right now, all from the same instance."""
    held = [r for r in resources.results.get_many(ids) if r["status"] == "PROCESSING"]
    return [r for r in held if r["instance_id"] == held[0]["instance_id"]] if held else []


def _responses(resources) -> dict[str, list[str]]:
    """Every response message, by image id."""
    found: dict[str, list[str]] = {}
    while True:
        batch = resources.responses.receive(10, 1)
        if not batch:
            return found
        for message in batch:
            body = json.loads(message.body)
            found.setdefault(body["id"], []).append(json.dumps(body, sort_keys=True))
            resources.responses.delete(message.receipt)
