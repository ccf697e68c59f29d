"""The local AWS endpoint keeps its contents across its own death and across restarts of scripts/run.

Each test runs the endpoint as scripts/run does (`python -m devstack.emulator --state-dir`),
kills it with SIGKILL and starts it again on the same port, and reaches it through boto3.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from devstack.local_state import MAX_STATE_BYTES, STATE_FILE, RequestGate
from devstack.stack import answers, moto_command
from sightfleet.aws.session import resource
from sightfleet.config import Settings
from sightfleet.errors import NotFound
from sightfleet.resources import Resources, provision
from tests.support import (AWS_TEST_ENV, REPO, control_headers, free_port, jpeg_bytes, stack_state_dir, start_stack,
                           start_stack_again, unique_prefix, wait_for)

pytestmark = pytest.mark.e2e

PHOTO = jpeg_bytes(scale=0.5)


class Endpoint:
    """The emulator with a state folder, on one port for its whole life."""

    def __init__(self, state_dir, save_interval_s: float = 0.3):
        for key, value in AWS_TEST_ENV.items():
            os.environ.setdefault(key, value)
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = moto_command(self.port, state_dir) + ["--save-interval", str(save_interval_s)]
        self.proc = None
        self.settings = Settings(endpoint_url=self.url, prefix=unique_prefix("p"))

    def start(self) -> dict:
        """Start, provision, restore; returns the restore's figures."""
        self.start_without_restore()
        return self.call("restore")

    def start_without_restore(self) -> None:
        self.proc = subprocess.Popen(self._argv, cwd=REPO, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: answers(self.url + "/moto-api/"), 30, what="the endpoint")
        provision(self.settings)

    def call(self, action: str) -> dict:
        reply = requests.post(f"{self.url}/_sightfleet/state/{action}", headers=control_headers(), timeout=60)
        reply.raise_for_status()
        return reply.json()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the master and the process serving moto
        self.proc.wait()
        wait_for(lambda: not answers(self.url + "/moto-api/"), 10, what="the endpoint to be gone")

    def wait_for_a_snapshot(self) -> None:
        after = time.time()
        state = self.state_dir / STATE_FILE
        wait_for(lambda: state.exists() and state.stat().st_mtime > after, 10, 0.05, what="a periodic snapshot")


@pytest.fixture
def endpoint(tmp_path):
    made = Endpoint(tmp_path / "aws")
    yield made
    if made.proc and made.proc.poll() is None:
        made.kill()


def test_contents_survive_a_kill_of_the_endpoint(endpoint):
    assert endpoint.start()["restored"] is False  # nothing saved yet
    r = Resources.connect(endpoint.settings)
    r.inputs.put("originals/a.jpg", PHOTO, "image/jpeg")
    r.outputs.put("results/a.json", b'{"ok": true}', "application/json")
    r.results.check()
    r.fleet_log.put("worker", "i-1", {"state": "busy"})
    large_body = json.dumps({"image": "x" * 20000})
    r.requests.send("small job")
    r.requests.send(large_body)
    held = r.requests.receive(1, 1, visibility_s=300)
    assert len(held) == 1
    endpoint.wait_for_a_snapshot()

    endpoint.kill()
    figures = endpoint.start()
    assert figures["restored"] is True and figures["queues"]["restored"] == 2, figures

    # The clients made before the death work on: same URLs, new connections.
    assert r.inputs.get("originals/a.jpg") == PHOTO
    assert r.outputs.get("results/a.json") == b'{"ok": true}'
    assert [d["state"] for d in r.fleet_log.all("worker")] == ["busy"]
    assert r.requests.counts() == {"visible": 1, "in_flight": 1, "delayed": 0}  # still invisible, as it was
    r.requests.delete(held[0].receipt)  # the handle given out before the death still works
    waiting, = r.requests.receive(1, 1)
    assert waiting.body in ("small job", large_body) and waiting.body != held[0].body
    assert r.requests.counts()["in_flight"] == 1 and r.requests.counts()["visible"] == 0


def test_what_changed_after_the_last_snapshot_is_lost_on_a_kill(tmp_path):
    """The loss window docs/local-stack.md states: a kill -9 loses what came after the last snapshot."""
    endpoint = Endpoint(tmp_path / "aws", save_interval_s=3600)
    try:
        endpoint.start()
        r = Resources.connect(endpoint.settings)
        r.outputs.put("kept.txt", b"saved", "text/plain")
        assert endpoint.call("save")["saved"] is True
        r.outputs.put("lost.txt", b"after the save", "text/plain")
        endpoint.kill()
        endpoint.start()
        assert r.outputs.get("kept.txt") == b"saved"
        with pytest.raises(NotFound):
            r.outputs.get("lost.txt")
    finally:
        endpoint.kill()


def test_a_fresh_endpoint_saves_nothing_before_it_restored(endpoint):
    endpoint.start()
    Resources.connect(endpoint.settings).outputs.put("k.txt", b"v", "text/plain")
    endpoint.call("save")
    endpoint.kill()
    saved = (endpoint.state_dir / STATE_FILE).read_bytes()
    endpoint.proc = subprocess.Popen(endpoint._argv, cwd=REPO, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: answers(endpoint.url + "/moto-api/"), 30, what="the endpoint")
    assert endpoint.call("save") == {"saved": False, "reason": "the saved state has not been restored yet"}
    time.sleep(1)  # several periodic save intervals
    assert (endpoint.state_dir / STATE_FILE).read_bytes() == saved


@pytest.mark.parametrize("damage", ["garbage", "wrong format", "missing blob", "oversized"])
def test_an_unreadable_state_starts_fresh_says_so_and_is_kept_aside(endpoint, damage):
    endpoint.start()
    Resources.connect(endpoint.settings).outputs.put("photo.jpg", PHOTO, "image/jpeg")
    endpoint.call("save")
    endpoint.kill()
    state = endpoint.state_dir / STATE_FILE
    if damage == "garbage":
        state.write_bytes(b'{"format": 1, "queues": [trunc')
    elif damage == "wrong format":
        state.write_text(json.dumps({"format": 99}))
    elif damage == "missing blob":
        for blob in (endpoint.state_dir / "blobs").iterdir():
            blob.unlink()
    else:
        with open(state, "r+b") as handle:
            handle.truncate(MAX_STATE_BYTES + 1)  # sparse: large on paper, nothing on disk

    figures = endpoint.start()
    assert figures["restored"] is False and figures["kept_at"], figures
    kept = figures["kept_at"]
    assert os.path.isdir(kept) and kept != str(endpoint.state_dir)
    r = Resources.connect(endpoint.settings)
    with pytest.raises(NotFound):
        r.outputs.get("photo.jpg")
    r.outputs.put("new.txt", b"new", "text/plain")  # the endpoint serves, fresh
    assert endpoint.call("save")["saved"] is True  # and saves again, into a new folder
    shutil.rmtree(kept)


def test_images_survive_a_restart_of_the_whole_stack(tmp_path):
    """scripts/run stopped with Ctrl-C and started again: the recognised image is still there."""
    stack = start_stack(tmp_path, SIGHTFLEET_MAX_INSTANCES="1", SIGHTFLEET_IDLE_GRACE_S="10")
    again = None
    try:
        reply = stack.post("/api/images?wait=60&album=kept",
                           files={"file": ("chelsea.jpg", jpeg_bytes(), "image/jpeg")}, timeout=90)
        assert reply.status_code == 200, reply.text
        image = reply.json()["images"][0]
        assert image["status"] == "SUCCEEDED", image
        assert stack.stop() == 0
        assert "saved the local AWS endpoint's state" in stack.log_text()

        again = start_stack_again(tmp_path, stack, SIGHTFLEET_MAX_INSTANCES="1")
        assert "restored the local AWS endpoint's state" in again.log_text(), again.log_text()[-3000:]
        result = again.get(f"/api/images/{image['id']}", timeout=10).json()
        assert result["status"] == "SUCCEEDED" and result["labels"] == image["labels"]
        assert requests.get(result["thumbnail_url"], timeout=10).content[:3] == b"\xff\xd8\xff"
        listed = again.get("/api/images?album=kept", timeout=10).json()
        assert [each["id"] for each in listed["images"]] == [image["id"]]
    except BaseException:
        print(stack.log_text()[-4000:])
        if again:
            print(again.log_text()[-4000:])
        raise
    finally:
        stack.stop()
        if again:
            again.stop()
        shutil.rmtree(stack_state_dir(stack), ignore_errors=True)


# -- the endpoint serves while it saves and restores -----------------------------------------------

BULK_ROWS = 3000  # enough that loading the tables takes longer than a worker's receive and GET


def fill_table(settings: Settings, table: str, items) -> None:
    with resource(settings, "dynamodb").Table(table).batch_writer() as batch:
        for item in items:
            batch.put_item(Item=item)


def test_a_job_taken_during_the_restore_finds_its_photo_and_its_result_stands(endpoint):
    """A worker long-polls the queue while the endpoint restores: the job's photo is back, its write wins."""
    endpoint.start()
    r = Resources.connect(endpoint.settings)
    fill_table(endpoint.settings, endpoint.settings.names.fleet_table,
               ({"pk": "bulk", "sk": f"{number:06d}", "doc": "{}"} for number in range(BULK_ROWS)))
    r.inputs.put("originals/saved.jpg", PHOTO, "image/jpeg")
    r.fleet_log.put("job", "saved", {"status": "PROCESSING"})
    r.requests.send(json.dumps({"id": "saved", "key": "originals/saved.jpg"}))
    assert endpoint.call("save")["saved"] is True
    endpoint.kill()
    endpoint.start_without_restore()

    seen = {}

    def worker():
        job, = r.requests.receive(1, 20)
        try:
            seen["photo"] = r.inputs.get(json.loads(job.body)["key"]) == PHOTO
        except NotFound:
            seen["photo"] = False
        r.fleet_log.put("job", "saved", {"status": "SUCCEEDED"})
        r.requests.delete(job.receipt)

    polling = threading.Thread(target=worker)
    polling.start()
    time.sleep(0.5)  # the worker's long poll is waiting in the endpoint
    figures = endpoint.call("restore")
    polling.join(30)
    assert figures["restored"] is True and figures["tables"]["restored"] == BULK_ROWS + 1, figures
    assert seen == {"photo": True}  # the job was not handed out before its photo was back
    assert r.fleet_log.get_many("job", ["saved"])["saved"]["status"] == "SUCCEEDED"  # not the saved PROCESSING


def test_a_snapshot_never_holds_a_row_without_the_message_sent_before_it(endpoint):
    """The web tier sends the job, then writes its row: no snapshot may hold the row alone."""
    endpoint.start()
    r = Resources.connect(endpoint.settings)
    # Rows read after the request queue and before the fleet table: a window a copy that is not
    # atomic leaves wide open (10,000 rows: a row alone in the first snapshots, every time).
    fill_table(endpoint.settings, endpoint.settings.names.results_table,
               ({"id": f"old{number:06d}"} for number in range(10000)))
    stop = threading.Event()

    def submitter():
        number = 0
        while not stop.is_set():
            r.requests.send(f"job{number}")
            r.fleet_log.put("submitted", f"job{number}", {})
            number += 1

    submitting = [threading.Thread(target=submitter) for _ in range(3)]
    for thread in submitting:
        thread.start()
    try:
        snapshots = []
        for _ in range(20):
            assert endpoint.call("save")["saved"] is True
            snapshots.append(json.loads((endpoint.state_dir / STATE_FILE).read_bytes()))
    finally:
        stop.set()
        for thread in submitting:
            thread.join(10)
    for state in snapshots:
        queued = {m["body"] for q in state["queues"] if q["name"] == endpoint.settings.names.request_queue
                  for m in q["messages"]}
        rows = {item["sk"]["S"] for t in state["tables"] for item in t["items"] if item.get("pk") == {"S": "submitted"}}
        assert rows <= queued, f"rows without their message: {sorted(rows - queued)[:5]}"


def test_a_long_poll_does_not_hold_up_a_save_and_still_gets_its_message(endpoint):
    endpoint.start()
    r = Resources.connect(endpoint.settings)
    received = []
    polling = threading.Thread(target=lambda: received.extend(r.requests.receive(1, 20)))
    polling.start()
    time.sleep(0.5)  # the poll is waiting in the endpoint
    assert endpoint.call("save")["saved"] is True
    assert polling.is_alive() and not received  # the save did not wait for the poll to end
    r.requests.send("after the save")
    polling.join(25)
    assert [m.body for m in received] == ["after the save"]


def test_the_gate_lets_a_turn_in_only_between_requests():
    gate, events = RequestGate(), []
    serving, turn_taken = threading.Event(), threading.Event()

    def request():
        with gate.serving():
            serving.set()
            time.sleep(0.3)
            events.append("request done")

    def turn():
        with gate.exclusive():
            events.append("turn")
            turn_taken.set()
            time.sleep(0.3)
        events.append("turn done")

    first = threading.Thread(target=request)
    first.start()
    serving.wait(5)
    taking = threading.Thread(target=turn)
    taking.start()
    turn_taken.wait(5)
    with gate.serving():  # a request arriving during the turn waits for its end
        events.append("next request")
    first.join(5)
    taking.join(5)
    assert events == ["request done", "turn", "turn done", "next request"]


def test_a_request_that_stepped_out_of_the_gate_lets_a_turn_in():
    gate, order = RequestGate(), []
    stepped_out = threading.Event()

    def long_poll():
        with gate.serving():
            with gate.stepped_out():
                stepped_out.set()
                time.sleep(0.3)
            order.append("poll back inside")

    polling = threading.Thread(target=long_poll)
    polling.start()
    stepped_out.wait(5)
    with gate.exclusive():
        order.append("turn")
    polling.join(5)
    assert order == ["turn", "poll back inside"]
