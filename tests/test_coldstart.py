"""Cold starts: the worker polls while its models load, the local host reacts to a nudge, the controller to a backlog.

Bounds on time are generous (5-10x and more what was measured here, see each test); what they
tell apart is a reaction that happens at once from one that waits for a poll or a tick seconds away.
"""
from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time

import pytest

from app_tier.startup import LoadingPipeline, StartupClock, process_started_at
from app_tier.worker import Worker
from controller.loop import Controller
from devstack.local_host import LocalHost
from sightfleet.aws.ec2 import Fleet
from sightfleet.config import Settings
from sightfleet.fleet_nudge import fleet_notifier, local_host_address, nudge_local_host
from sightfleet.interfaces import DECISION_KIND
from sightfleet.memory import memory_resources
from sightfleet.resources import Resources
from tests.support import REPO, alive, jpeg_bytes, start_moto, start_worker_process, unique_prefix, wait_for
from web_tier.submit import Submitter, Upload

pytestmark = pytest.mark.slow  # worker processes started cold

SLEEPER = (sys.executable, "-c", "import time; time.sleep(600)")
LONG_POLL_S = 5.0   # the host's poll in the nudge tests: a reaction well inside it came from the nudge
# Measured here (load 5): a nudged host boots a worker 35-75 ms after RunInstances is called, pauses
# or resumes it 15-40 ms after the call; the idle controller launches 0.16-0.55 s after a message.
NUDGED_WITHIN_S = 2.5
TICKED_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def pipeline():
    from app_tier.pipeline import Pipeline, PipelineSettings
    return Pipeline(PipelineSettings())


def submit(resources, name: str = "chelsea") -> str:
    return Submitter(resources, resources.settings.max_upload_bytes).submit(
        Upload(jpeg_bytes(name, 0.4), f"{name}.jpg"))["id"]


def claimed(resources, image_id: str) -> bool:
    return resources.results.get(image_id)["status"] == "PROCESSING"


def test_a_job_received_while_the_models_load_waits_for_them_and_succeeds(pipeline):
    resources, _ = memory_resources(Settings(prefix="mem", idle_grace_s=1.0, receive_wait_s=1))
    [instance_id] = resources.fleet.launch(1, "")
    image_id = submit(resources)
    release = threading.Event()

    def slow_models():
        assert release.wait(30)
        return pipeline

    def release_once_claimed():   # the job was received and claimed with no models yet
        wait_for(lambda: claimed(resources, image_id), 20, 0.02, "the claim")
        release.set()

    helper = threading.Thread(target=release_once_claimed)
    helper.start()
    assert Worker(resources, slow_models, instance_id).work() == "idle"   # signals need the main thread
    helper.join()
    result = resources.results.get(image_id)
    assert result["status"] == "SUCCEEDED" and result["top_label"] == "Cat"
    assert resources.requests.bodies() == []


def test_models_that_fail_after_the_first_poll_end_the_worker_and_hand_its_job_back(pipeline):
    resources, _ = memory_resources(Settings(prefix="mem", receive_wait_s=1))
    [instance_id] = resources.fleet.launch(1, "")
    image_id = submit(resources)

    def broken_models():
        wait_for(lambda: claimed(resources, image_id), 20, 0.02, "the claim")
        raise OSError("model file missing")

    with pytest.raises(OSError, match="model file missing"):
        Worker(resources, broken_models, instance_id).work()
    assert resources.results.get(image_id)["status"] == "QUEUED"
    assert resources.requests.counts()["visible"] == 1   # handed back at once, for another worker
    assert resources.fleet_log.items[("worker", instance_id)]["state"] == "crashed"
    assert resources.fleet.states[instance_id].state == "running"   # a crash is restarted, not retired


def test_models_that_fail_with_no_job_in_hand_end_the_worker_within_a_short_poll():
    resources, faults = memory_resources(Settings(prefix="mem", receive_wait_s=20, idle_grace_s=600))
    [instance_id] = resources.fleet.launch(1, "")

    def broken_models():
        wait_for(lambda: faults.calls["requests.receive"], 20, 0.02, "the first poll")
        raise OSError("no IR")

    started = time.monotonic()
    with pytest.raises(OSError, match="no IR"):
        Worker(resources, broken_models, instance_id).work()
    # A poll while the models load lasts 1 s, not the 20 s a long poll would have.
    assert time.monotonic() - started < 10


def test_the_worker_logs_its_start_up_phases(pipeline, caplog):
    resources, _ = memory_resources(Settings(prefix="mem", idle_grace_s=0.5, receive_wait_s=1))
    [instance_id] = resources.fleet.launch(1, "")
    clock = StartupClock()
    for phase in ("imports", "settings", "clients"):
        clock.mark(phase)
    with caplog.at_level(logging.INFO):
        Worker(resources, lambda: pipeline, instance_id, startup=clock).work()
    assert [p for p in clock.phases if p != "models loaded"] == ["imports", "settings", "clients", "first poll"]
    assert clock.phases["first poll"] >= clock.phases["clients"] and clock.phases["models loaded"] >= 0
    assert "start-up, seconds since the process started: imports" in caplog.text
    assert "first poll" in caplog.text and "models loaded in" in caplog.text
    assert resources.fleet_log.items[("worker", instance_id)]["model_load_s"] is not None


def test_a_loading_pipeline_hands_out_the_pipelines_attributes_once_loaded():
    class Loaded:
        AHEAD = 2

    models = LoadingPipeline(Loaded)
    assert models.AHEAD == 2 and models.ready and models.failed is None and models.load_seconds >= 0
    broken = LoadingPipeline(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        broken.AHEAD
    assert not broken.ready and isinstance(broken.failed, ZeroDivisionError)


def test_process_started_at_is_when_the_process_started():
    before = time.time()
    child = subprocess.run([sys.executable, "-c", "import time; time.sleep(0.5); "
                            "from app_tier.startup import process_started_at; print(process_started_at())"],
                           cwd=REPO, capture_output=True, text=True, check=True)
    started = float(child.stdout)
    # The kernel counts in ticks of 10 ms; the child slept 0.5 s before asking, which must not count.
    assert before - 0.1 <= started <= before + 0.4
    assert process_started_at() < before


def test_a_worker_process_logs_its_phases_from_its_start_to_its_first_poll(settings, resources, tmp_path):
    [instance_id] = resources.fleet.launch(1, "#!/bin/bash\n")
    log_path = tmp_path / "worker.log"
    proc = start_worker_process(settings, instance_id, log_path, SIGHTFLEET_IDLE_GRACE_S="600")
    try:
        wait_for(lambda: "models loaded in" in log_path.read_text(), 120, 0.2, "the models")
    finally:
        proc.terminate()
        proc.wait(30)
    text = log_path.read_text()
    line = next(x for x in text.splitlines() if "start-up, seconds since the process started" in x)
    phases = dict(item.rsplit(" ", 2)[:2] for item in line.split("started: ", 1)[1].split(", "))
    assert list(phases) == ["imports", "settings", "clients", "first poll"]
    seconds = [float(value) for value in phases.values()]
    assert seconds == sorted(seconds) and 0 < seconds[-1] < 60


def test_a_nudge_reaches_a_listening_host_and_nobody_listening_is_fine(settings):
    address = local_host_address(settings)
    assert address.startswith("\0") and address != local_host_address(settings.with_changes(prefix="other"))
    assert nudge_local_host(address) is False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        assert nudge_local_host(address) is True
        assert listener.recv(64) == b"changed"


def test_the_fleet_of_a_local_stack_nudges_its_host_and_one_on_aws_nobody(resources, settings):
    assert fleet_notifier(settings.with_changes(endpoint_url="")) is None   # on AWS no host listens
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(local_host_address(settings))
        listener.settimeout(5)
        [instance_id] = resources.fleet.launch(1, "#!/bin/bash\n")
        assert listener.recv(64) == b"changed"
        resources.fleet.terminate([instance_id])
        assert listener.recv(64) == b"changed"


def test_a_nudged_host_boots_pauses_and_resumes_at_once_not_at_its_next_poll(settings):
    fleet = Fleet(settings, on_change=fleet_notifier(settings))
    host = LocalHost(fleet, {"SIGHTFLEET_PREFIX": settings.prefix}, command=SLEEPER, stop_grace_s=5,
                     poll_s=LONG_POLL_S, idle_poll_s=LONG_POLL_S, listen=local_host_address(settings))
    stop = threading.Event()
    thread = threading.Thread(target=host.run, args=(stop,))
    thread.start()
    try:
        time.sleep(1.0)   # its first rounds are done: the next poll is seconds away
        reactions = {}

        def timed(what: str, change, seen) -> None:
            started = time.monotonic()
            change()
            wait_for(seen, NUDGED_WITHIN_S, 0.01, f"the host to react to the {what}")
            reactions[what] = time.monotonic() - started
            time.sleep(0.5)   # past the round that reacted: the next one is a poll away again

        [instance_id] = fleet.launch(1, "#!/bin/bash\n")
        wait_for(lambda: instance_id in host.pids(), NUDGED_WITHIN_S, 0.01, "the boot")
        time.sleep(0.5)
        timed("stop", lambda: fleet.stop([instance_id]), lambda: instance_id in host.paused())
        timed("start", lambda: fleet.start([instance_id]), lambda: instance_id not in host.paused())
        pid = host.pids()[instance_id]
        timed("terminate", lambda: fleet.terminate([instance_id]), lambda: not alive(pid))   # SIGTERM at once
        assert all(seconds < NUDGED_WITHIN_S for seconds in reactions.values())
    finally:
        stop.set()
        thread.join(30)
    assert host.pids() == {}


def test_an_idle_controller_ticks_as_soon_as_a_backlog_appears(settings_factory):
    settings = settings_factory(max_instances=2, controller_tick_s=60.0)
    resources = Resources.connect(settings)
    stop = threading.Event()
    thread = threading.Thread(target=Controller(resources, settings).run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: resources.fleet_log.all(DECISION_KIND), 20, 0.1, "the first tick")
        time.sleep(0.5)   # inside the first tick's 60 s wait
        resources.requests.send("job")
        started = time.monotonic()
        wait_for(lambda: resources.fleet.instances(), TICKED_WITHIN_S, 0.05, "a launch for the new backlog")
        assert time.monotonic() - started < TICKED_WITHIN_S
    finally:
        stop.set()
        thread.join(30)


@pytest.mark.parametrize("code", ["UnsupportedHibernationConfiguration", "UnsupportedOperation"])
def test_a_refused_hibernation_falls_back_to_a_plain_stop_and_says_so(code, caplog):
    proc, url = start_moto(lambda port: [sys.executable, str(REPO / "tests" / "refusing_endpoint.py"),
                                         str(port), code])
    try:
        fleet = Fleet(Settings(prefix=unique_prefix("hib"), endpoint_url=url))
        [instance_id] = fleet.launch(1, "#!/bin/bash\n")
        with caplog.at_level(logging.WARNING, logger="sightfleet.aws.ec2"):
            assert fleet.stop([instance_id]) is False   # a plain stop, not hibernating
        [stopped] = fleet.instances(states=("stopping", "stopped"))
        assert stopped.id == instance_id and stopped.pooled_at is not None
        assert f"cannot hibernate ['{instance_id}'] ({code}" in caplog.text and "stopping them plainly" in caplog.text
    finally:
        proc.terminate()
        proc.wait(10)


def test_model_loads_on_one_machine_take_turns_by_slot(tmp_path):
    from app_tier.startup import load_slot
    order, first_in = [], threading.Event()

    def load(name: str, hold_s: float) -> None:
        with load_slot(1, tmp_path):
            order.append(f"{name} in")
            first_in.set()
            time.sleep(hold_s)
            order.append(f"{name} out")

    first = threading.Thread(target=load, args=("first", 0.5))
    first.start()
    first_in.wait(10)
    load("second", 0)   # a slot is an flock on its own open file: it excludes within one process too
    first.join()
    assert order == ["first in", "first out", "second in", "second out"]
    with load_slot(2, tmp_path), load_slot(2, tmp_path):   # two slots: two loads at once
        pass


def test_a_worker_whose_models_are_slow_does_not_go_idle_while_they_load(pipeline):
    resources, _ = memory_resources(Settings(prefix="mem", idle_grace_s=0.5, receive_wait_s=1))
    [instance_id] = resources.fleet.launch(1, "")

    def slow_models():
        time.sleep(2.0)   # four times the idle grace
        return pipeline

    started = time.monotonic()
    assert Worker(resources, slow_models, instance_id).work() == "idle"
    assert time.monotonic() - started >= 2.5   # load, then the whole grace with the models in hand


def test_a_hung_model_load_ends_the_worker_instead_of_keeping_its_instance_forever(monkeypatch):
    from app_tier import startup
    monkeypatch.setattr(startup, "LOAD_DEADLINE_S", 2)
    resources, _ = memory_resources(Settings(prefix="mem", receive_wait_s=20, idle_grace_s=600))
    [instance_id] = resources.fleet.launch(1, "")
    never = threading.Event()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="did not load within 2 s"):
        Worker(resources, lambda: never.wait(60), instance_id).work()
    assert time.monotonic() - started < 15
    never.set()


def test_a_loading_pipeline_past_its_deadline_reports_the_hang():
    release = threading.Event()
    models = LoadingPipeline(lambda: release.wait(30), deadline_s=0.3)
    assert models.failed is None   # still within its time
    with pytest.raises(TimeoutError):
        models.wait()
    assert isinstance(models.failed, TimeoutError) and not models.ready
    release.set()


def test_load_slots_all_held_for_too_long_let_the_load_go_ahead(tmp_path, caplog):
    import fcntl

    from app_tier.startup import _take_slot
    holder, waiter = open(tmp_path / "slot-0.lock", "a+"), open(tmp_path / "slot-0.lock", "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)
    with caplog.at_level(logging.WARNING):
        assert _take_slot([waiter], max_wait_s=0.3) is None
    assert "loading without one" in caplog.text
    holder.close()
    waiter.close()
