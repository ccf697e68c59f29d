"""The local supervisor heals the stack: a dead child is restarted with backoff, never the whole stack stopped.

First the restart rules on tiny real processes, then one stack started like scripts/run whose
controller, local host, web master and AWS endpoint are each killed with SIGKILL in turn; the
last test stops it with SIGINT and finds no process left.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from devstack import stack as stack_module
from devstack.stack import RestartPolicy, Supervisor, answers, describe_exit, moto_command
from sightfleet.aws.session import client
from sightfleet.aws.sqs import ensure_queues
from sightfleet.config import Settings
from sightfleet.errors import NotFound, Unavailable
from sightfleet.resources import Resources, provision
from tests.support import (AWS_TEST_ENV, alive, control_headers, descendants, free_port, jpeg_bytes, stack_child_pid,
                           stack_state_dir, start_stack, unique_prefix, wait_for)

pytestmark = pytest.mark.e2e

FAST = RestartPolicy(delay_s=0.1, max_delay_s=0.4, burst=3, interval_s=60, slow_retry_s=0.5)
EXITS_3 = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEPS = [sys.executable, "-c", "import time; time.sleep(600)"]
# Leaves a grandchild in its process group, then dies: as gunicorn's workers outlive a killed master.
LEAVES_A_CHILD = [sys.executable, "-c", "import subprocess, sys, time; "
                  "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                  "time.sleep(0.3); sys.exit(1)"]


@pytest.fixture
def supervisor():
    made = Supervisor(Settings(), dict(os.environ), threading.Event(), policy=FAST)
    yield made
    made.stop_all()


def restart_dead_children_until(supervisor: Supervisor, check, timeout_s: float = 10, what: str = "condition"):
    def restarted_dead_children():
        supervisor.restart_dead_children()
        return check()
    return wait_for(restarted_dead_children, timeout_s, 0.05, what)


def test_backoff_doubles_up_to_its_cap_and_starts_over_once_the_deaths_are_old():
    policy = RestartPolicy(delay_s=1, max_delay_s=8, burst=10, interval_s=120, slow_retry_s=60)
    deaths, delays = [], []
    for second in range(6):
        deaths.append(float(second))
        delays.append(policy.next_delay(deaths, float(second)))
    assert delays == [(1, False), (2, False), (4, False), (8, False), (8, False), (8, False)]
    assert policy.next_delay(deaths + [500.0], 500.0) == (1, False)  # the earlier deaths are past the interval


def test_past_the_burst_it_crash_loops_and_is_retried_slowly():
    policy = RestartPolicy(delay_s=1, max_delay_s=30, burst=3, interval_s=120, slow_retry_s=60)
    assert policy.next_delay([0, 1, 2], 2) == (4, False)
    assert policy.next_delay([0, 1, 2, 3], 3) == (60, True)


@pytest.mark.parametrize("returncode, words", [(3, "exit code 3"), (0, "exit code 0"),
                                               (-signal.SIGKILL, "killed by SIGKILL"),
                                               (-signal.SIGSEGV, "killed by SIGSEGV")])
def test_exits_are_told_in_words(returncode, words):
    assert describe_exit(returncode) == words


def test_a_dead_child_is_logged_and_started_again(supervisor, caplog):
    caplog.set_level(logging.INFO, "devstack.stack")
    supervisor.start("steady", SLEEPS)
    supervisor.start("brittle", EXITS_3)
    steady, brittle = supervisor.children
    first_pid, steady_pid = brittle.proc.pid, steady.proc.pid
    restart_dead_children_until(supervisor, lambda: brittle.proc.pid != first_pid, what="a restart")
    assert f"brittle (pid {first_pid}) died: exit code 3" in caplog.text
    assert f"restarted brittle: pid {brittle.proc.pid} (was {first_pid}" in caplog.text
    assert steady.proc.pid == steady_pid and alive(steady_pid)  # the others are left alone


def test_a_crash_looping_child_is_said_loudly_and_still_retried(supervisor, caplog):
    caplog.set_level(logging.INFO, "devstack.stack")
    supervisor.start("looping", EXITS_3)
    child = supervisor.children[0]
    restart_dead_children_until(supervisor, lambda: "looping CRASH-LOOPS" in caplog.text, what="the crash loop to be told")
    looping_record = next(r for r in caplog.records if "CRASH-LOOPS" in r.getMessage())
    assert looping_record.levelno == logging.ERROR
    pid = child.proc.pid
    restart_dead_children_until(supervisor, lambda: child.proc.pid != pid, what="a slow retry")


def test_what_a_dead_child_left_in_its_group_is_gone_before_the_restart(supervisor):
    supervisor.start("leaky", LEAVES_A_CHILD)
    child = supervisor.children[0]
    first_pid = child.proc.pid
    grandchildren = wait_for(lambda: descendants(first_pid), 10, 0.05, what="the grandchild")
    restart_dead_children_until(supervisor, lambda: child.proc.pid != first_pid, what="a restart")
    wait_for(lambda: not any(alive(pid) for pid in grandchildren), 5, 0.05, what="the grandchild to be stopped")


def test_stop_all_ends_every_child_even_one_waiting_for_its_restart():
    slow = Supervisor(Settings(), dict(os.environ), threading.Event(),
                      policy=RestartPolicy(delay_s=60, max_delay_s=60, burst=3, interval_s=60, slow_retry_s=60))
    slow.start("steady", SLEEPS)
    slow.start("brittle", EXITS_3)
    steady_pid = slow.children[0].proc.pid
    wait_for(lambda: slow.restart_dead_children() or slow.children[1].restart_at is not None, 10, 0.05, what="the death")
    slow.stop_all()
    assert not alive(steady_pid) and slow.children == []


# -- the endpoint keeper, against real endpoints ---------------------------------------------------

@contextmanager
def keeping(supervisor: Supervisor, stop: threading.Event):
    """The supervisor's endpoint keeper on its own thread, as run() starts it."""
    thread = threading.Thread(target=supervisor.keep_endpoint, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)


def all_there(settings: Settings) -> bool:
    try:
        for check in Resources.connect(settings).checks().values():
            check()
    except NotFound:
        return False
    return True


@pytest.mark.parametrize("loss", ["output bucket", "results table"])
def test_any_lost_resource_is_provisioned_again(settings, loss):
    """Not only the request queue: a bucket or table that is gone is created again."""
    if loss == "output bucket":
        client(settings, "s3").delete_bucket(Bucket=settings.names.output_bucket)
    else:
        client(settings, "dynamodb").delete_table(TableName=settings.names.results_table)
    assert not all_there(settings)
    stop = threading.Event()
    with keeping(Supervisor(settings, dict(os.environ), stop, probe_s=0.1), stop):
        wait_for(lambda: all_there(settings), 30, 0.2, what=f"the {loss} to be provisioned again")


@pytest.mark.parametrize("failure", [Unavailable("the endpoint went away mid-provisioning"),
                                     RuntimeError("a bug in provisioning")])
def test_a_provisioning_that_fails_part_way_is_retried_until_everything_is_there(moto_server, monkeypatch, caplog,
                                                                                  failure):
    settings = Settings(endpoint_url=moto_server, prefix=unique_prefix())
    attempts = []

    def fails_after_the_queues(wanted: Settings) -> None:
        attempts.append(wanted)
        if len(attempts) == 1:
            ensure_queues(wanted)  # the request queue exists now: a probe of it alone would find nothing amiss
            raise failure
        provision(wanted)
    monkeypatch.setattr(stack_module, "provision", fails_after_the_queues)
    stop = threading.Event()
    with keeping(Supervisor(settings, dict(os.environ), stop, probe_s=0.1), stop) as keeper:
        wait_for(lambda: all_there(settings), 30, 0.2, what="every resource to be provisioned")
        assert keeper.is_alive()
    assert len(attempts) >= 2 and str(failure) in caplog.text


@pytest.fixture
def persistent_endpoint(tmp_path):
    """A supervisor whose only child is the endpoint with a state folder, not yet provisioned or restored."""
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    port, stop = free_port(), threading.Event()
    settings = Settings(endpoint_url=f"http://127.0.0.1:{port}", prefix=unique_prefix())
    made = Supervisor(settings, dict(os.environ), stop, state_dir=tmp_path / "aws", probe_s=0.1)
    made.start("aws", moto_command(port, made.state_dir))
    wait_for(lambda: answers(made.aws_url + "/moto-api/"), 30, what="the endpoint")
    yield made, stop
    made.stop_all()


def test_a_failed_restore_is_retried_until_the_endpoint_saves_again(persistent_endpoint, monkeypatch, caplog):
    supervisor, stop = persistent_endpoint
    real_state_call, calls = stack_module._state_call, []

    def first_restore_fails(aws_url: str, action: str, headers: dict):
        calls.append(action)
        if calls.count("restore") == 1:
            aws_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the call fails as a dead endpoint's
        return real_state_call(aws_url, action, headers)
    monkeypatch.setattr(stack_module, "_state_call", first_restore_fails)

    def saves() -> bool:
        return requests.post(supervisor.aws_url + "/_sightfleet/state/save", headers=control_headers(),
                             timeout=30).json()["saved"]
    with keeping(supervisor, stop):
        wait_for(saves, 30, 0.2, what="the endpoint to save (once restored)")
    assert calls.count("restore") >= 2 and "could not restore" in caplog.text


def test_a_refused_save_at_stop_is_an_error(persistent_endpoint, caplog):
    supervisor, _ = persistent_endpoint
    provision(supervisor.settings)  # but never restored: the endpoint refuses to save over its snapshot
    supervisor.stop_all()
    refused = [r for r in caplog.records if "refused to save" in r.getMessage()]
    assert refused and refused[0].levelno == logging.ERROR, caplog.text


# -- one real stack, its children killed in turn ------------------------------------------------

WORKER_OPTIONS = {"SIGHTFLEET_MAX_INSTANCES": "1", "SIGHTFLEET_IDLE_GRACE_S": "20"}
HEAL_BOUND_S = 90  # generous: a restart is a process start (gunicorn, boto3 imports) on a busy 2-core machine


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    started = start_stack(tmp_path_factory.mktemp("healing"), **WORKER_OPTIONS)
    yield started
    started.stop()
    shutil.rmtree(stack_state_dir(started), ignore_errors=True)


def healthy(stack) -> bool:
    stack.track()
    try:
        return stack.get("/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def kill_and_wait_for_restart(stack, argv_head: tuple[str, ...], name: str) -> tuple[int, int]:
    """SIGKILL the stack's child; returns (old pid, new pid) once the supervisor started another."""
    old = stack_child_pid(stack, *argv_head)
    assert old, f"no {name} in the stack"
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (pid := stack_child_pid(stack, *argv_head)) not in (None, old) and pid, HEAL_BOUND_S,
                   what=f"{name} to be started again")
    log = stack.log_text()
    assert f"{name} (pid {old}) died: killed by SIGKILL" in log, log[-3000:]
    assert f"restarted {name}: pid {new} (was {old}" in log, log[-3000:]
    return old, new


@pytest.mark.parametrize("argv_head, name", [(("-m", "controller"), "controller"),
                                             (("-m", "devstack.local_host"), "local-host"),
                                             (("-m", "gunicorn"), "web")])
def test_a_killed_child_is_restarted_and_the_stack_keeps_serving(stack, argv_head, name):
    others = {head: stack_child_pid(stack, *head) for head in
              (("-m", "controller"), ("-m", "devstack.local_host"), ("-m", "gunicorn"), ("-m", "devstack.emulator"))
              if head != argv_head}
    kill_and_wait_for_restart(stack, argv_head, name)
    wait_for(lambda: healthy(stack), HEAL_BOUND_S, 0.5, what="/healthz 200 again")
    assert stack.proc.poll() is None
    assert {head: stack_child_pid(stack, *head) for head in others} == others  # nobody else was restarted


def test_a_killed_endpoint_is_restarted_and_provisioned_while_the_rest_carries_on(stack):
    web, controller, host = (stack_child_pid(stack, "-m", what) for what in ("gunicorn", "controller",
                                                                             "devstack.local_host"))
    reply = stack.post("/api/images", files={"file": ("chelsea.jpg", jpeg_bytes(), "image/jpeg")},
                       timeout=30)
    assert reply.status_code == 202, reply.text
    status_url = stack.web_url + reply.json()["images"][0]["status_url"]
    wait_for_a_snapshot_after(stack, time.time())

    kill_and_wait_for_restart(stack, ("-m", "devstack.emulator"), "aws")
    wait_for(lambda: healthy(stack), HEAL_BOUND_S, 0.5, what="/healthz 200 again")
    # Provisioning makes /healthz answer 200; the restore into those resources follows a moment later.
    wait_for(lambda: "restored the local AWS endpoint's state" in stack.log_text(), HEAL_BOUND_S, 0.2,
             what="the saved state to be restored")
    assert "lost the stack's state" in stack.log_text(), stack.log_text()[-3000:]
    # The same web master (and its boto3 clients, cached queue URLs included) serves on.
    assert (stack_child_pid(stack, "-m", "gunicorn"), stack_child_pid(stack, "-m", "controller"),
            stack_child_pid(stack, "-m", "devstack.local_host")) == (web, controller, host)

    def final():
        stack.track()
        found = requests.get(status_url, headers=stack.headers, timeout=10)
        assert found.status_code == 200, found.text  # the accepted image survived the endpoint's death
        return found.json() if found.json()["status"] in ("SUCCEEDED", "FAILED") else None
    result = wait_for(final, 240, 1, what="the image accepted before the endpoint died to be recognised")
    assert result["status"] == "SUCCEEDED", result
    again = stack.post("/api/images", files={"file": ("coffee.jpg", jpeg_bytes("coffee"),
                                                                        "image/jpeg")}, timeout=30)
    assert again.status_code == 202, again.text


def test_sigint_stops_every_process_of_the_stack(stack):
    stack.track()
    assert stack.stop() == 0, stack.log_text()[-3000:]
    left = [pid for pid in stack.seen_pids if alive(pid)]
    assert not left, f"processes left behind: {left}"
    assert "died" not in stack.log_text().split("stopping the stack")[-1]  # a stop is not mistaken for deaths


def wait_for_a_snapshot_after(stack, moment: float) -> None:
    """Wait until the endpoint saved its state after `moment` (it saves every few seconds)."""
    state = Path(stack_state_dir(stack)) / "state.json"
    wait_for(lambda: state.exists() and state.stat().st_mtime > moment, 30, 0.2, what="a snapshot")
