"""The watchdog: held jobs that make no progress are handed back and the worker ends, so it is replaced."""
from __future__ import annotations

import threading
import time

import pytest

from app_tier.heartbeat import Heartbeat
from app_tier.worker import STALLED_EXIT
from sightfleet.config import Settings
from sightfleet.memory import memory_resources
from sightfleet.resources import Resources
from tests.support import jpeg_bytes, start_worker_process, wait_for
from web_tier.submit import Submitter, Upload

pytestmark = pytest.mark.slow  # a worker process left to hang


def test_held_work_without_progress_is_handed_back_and_the_stall_reported():
    resources, _ = memory_resources(Settings(prefix="mem", stall_timeout_s=1.5, visibility_timeout_s=30))
    resources.requests.send("job")
    [message] = resources.requests.receive(1, 0)
    stalled = threading.Event()
    heartbeat = Heartbeat(resources, "i-hung", dict, on_stall=stalled.set)
    heartbeat.hold([message.receipt])
    heartbeat.start()
    try:
        assert stalled.wait(10), "the watchdog never fired"
        [again] = resources.requests.receive(1, 0)   # visible at once, not after the 30 s timeout
        assert again.receive_count == 2
        assert resources.fleet_log.items[("worker", "i-hung")]["state"] == "stalled"
    finally:
        heartbeat.stop()


def test_progress_keeps_the_watchdog_quiet_and_idle_never_trips_it():
    resources, _ = memory_resources(Settings(prefix="mem", stall_timeout_s=3, visibility_timeout_s=30))
    stalled = threading.Event()
    heartbeat = Heartbeat(resources, "i-busy", dict, on_stall=stalled.set)
    heartbeat.start()
    try:
        time.sleep(3.5)   # idle longer than the stall timeout: nothing held, nothing to watch
        resources.requests.send("job")
        [message] = resources.requests.receive(1, 0)
        heartbeat.hold([message.receipt])
        for _ in range(10):   # a job moving on, step after step, for longer than the timeout
            time.sleep(0.5)
            heartbeat.progress()
        assert not stalled.is_set()
    finally:
        heartbeat.stop()


def test_a_worker_hung_in_c_code_exits_and_its_job_is_redone(settings_factory, tmp_path):
    settings = settings_factory(visibility_timeout_s=60)
    resources = Resources.connect(settings)
    accepted = Submitter(resources, 10 << 20).submit(Upload(jpeg_bytes("chelsea", 0.3), "chelsea.jpg"))
    log_path = tmp_path / "worker.log"
    started = time.monotonic()
    proc = start_worker_process(settings, "i-hung", log_path, "tests.hung_worker", SIGHTFLEET_STALL_TIMEOUT_S="3")
    try:
        assert proc.wait(timeout=45) == STALLED_EXIT
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - started < 45
    text = log_path.read_text()
    assert "the pipeline is hung" in text and "i-hung" in text, text
    # Handed back at once: another worker can take it long before its 60 s visibility would lapse.
    [message] = wait_for(lambda: resources.requests.receive(1, 1), 10, what="the job handed back")
    assert message.receive_count == 2 and accepted["id"] in message.body
    assert resources.fleet_log.get_many("worker", ["i-hung"])["i-hung"]["state"] == "stalled"
