"""The operators' actions on the stack as scripts/run starts it (controller, local EC2 host, real workers).

One stack for the module; each test leaves processing running. In order: a maximum lowered at run time
is never exceeded; pause holds uploads back and launches nothing, resume finishes them; purge leaves no
photo QUEUED; after a storage fault, retry brings the failed photos to SUCCEEDED once each; redrive
processes the valid dead letter while the poison one lands back in the dead-letter queue.
"""
from __future__ import annotations

import time
from dataclasses import replace

import pytest
import requests

from sightfleet.config import Settings
from sightfleet.contracts import Job, Result, iso, new_image_id
from sightfleet.interfaces import LIVE_STATES
from sightfleet.resources import Resources
from tests.support import AWS_TEST_ENV, jpeg_bytes, start_stack, start_worker_process, wait_for

pytestmark = pytest.mark.e2e   # a stack of its own (module fixture), not the shared local_stack

CAP = 2
PHOTOS = ("chelsea", "coffee", "astronaut")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        for name, value in AWS_TEST_ENV.items():
            env.setenv(name, value)   # moto takes any credentials; the stack's own are "local"
        stack = start_stack(tmp_path_factory.mktemp("ops"), SIGHTFLEET_MAX_INSTANCES=str(CAP),
                            SIGHTFLEET_WARM_POOL_SIZE="1", SIGHTFLEET_IDLE_GRACE_S="8", SIGHTFLEET_POOL_GRACE_S="3",
                            SIGHTFLEET_CONTROLLER_TICK_S="1", SIGHTFLEET_TARGET_BACKLOG_PER_INSTANCE="1")
        try:
            yield stack
        except BaseException:
            print(stack.log_text()[-8000:])
            raise
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def resources(stack) -> Resources:
    return Resources.connect(Settings(endpoint_url=stack.aws_url, prefix=stack.prefix))


def upload(stack, count: int) -> list[dict]:
    """count photos through the API; their accepted answers."""
    answers = []
    for n in range(count):
        name = PHOTOS[n % len(PHOTOS)]
        reply = stack.post("/api/images", timeout=30, files={"file": (f"{name}-{n}.jpg", jpeg_bytes(name, 0.3),
                                                                      "image/jpeg")})
        assert reply.status_code == 202, reply.text
        answers.append(reply.json())
    return answers


def ids_of(answers: list[dict]) -> list[str]:
    return [a["images"][0]["id"] for a in answers]


def statuses(resources, ids: list[str]) -> list[str]:
    return [r["status"] for r in resources.results.get_many(ids)]


def final(resources, ids: list[str], timeout_s: float = 180) -> list[dict]:
    return wait_for(lambda: (rows := resources.results.get_many(ids)) and all(
        r["status"] in ("SUCCEEDED", "FAILED") for r in rows) and rows, timeout_s, 0.5, "final results")


def ops(stack, method: str, path: str, body=None) -> dict:
    reply = requests.request(method, stack.web_url + path, json=body, headers=stack.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_maximum_lowered_at_run_time_is_never_exceeded(stack, resources):
    assert ops(stack, "PATCH", "/api/ops/fleet", {"max_instances": 1})["effective"]["max_instances"] == 1
    ids = ids_of(upload(stack, 6))   # a backlog of 6 at 1 per instance wants the deployed cap of 2
    most = 0
    while not all(s == "SUCCEEDED" for s in statuses(resources, ids)):
        most = max(most, len(resources.fleet.instances(states=LIVE_STATES)))
        time.sleep(0.3)
    assert most == 1
    decisions = resources.fleet_log.all("decision")
    assert decisions[-1]["limits"]["max_instances"] == 1   # recorded like every decision
    ops(stack, "PATCH", "/api/ops/fleet", {"max_instances": None})


def test_paused_uploads_queue_and_nothing_is_launched_until_resumed(stack, resources):
    wait_for(lambda: not resources.fleet.instances(states=LIVE_STATES), 60, 0.5, "the fleet idle")
    paused_at = iso(time.time())
    assert ops(stack, "POST", "/api/ops/pause")["paused"]
    answers = upload(stack, 3)
    assert all(a["processing"] == "paused" for a in answers)
    time.sleep(8)
    ids = ids_of(answers)
    assert statuses(resources, ids) == ["QUEUED"] * 3
    while_paused = resources.fleet_log.all("decision", since_key=paused_at)
    assert while_paused and all(d["paused"] and not d["launched"] and not d["started"] for d in while_paused)
    assert not resources.fleet.instances(states=LIVE_STATES)
    ops(stack, "POST", "/api/ops/resume")
    assert {r["status"] for r in final(resources, ids)} == {"SUCCEEDED"}


def test_purge_leaves_no_photo_queued(stack, resources):
    ops(stack, "POST", "/api/ops/pause")
    ids = ids_of(upload(stack, 2))
    report = ops(stack, "POST", "/api/ops/purge", {"queue": "requests"})
    ops(stack, "POST", "/api/ops/resume")
    assert report["done"] == 2 and sorted(report["ids"]) == sorted(ids)
    rows = resources.results.get_many(ids)
    assert [(r["status"], r["error"]["code"]) for r in rows] == [("FAILED", "PURGED")] * 2
    assert resources.requests.counts()["visible"] == 0


def test_after_a_storage_fault_retry_brings_each_failed_photo_to_succeeded_once(stack, resources, tmp_path):
    ops(stack, "PATCH", "/api/ops/fleet", {"max_instances": 0})   # the stack's own workers leave
    wait_for(lambda: not resources.fleet.instances(states=LIVE_STATES), 60, 0.5, "the fleet gone")
    # The fault: a worker whose every output write fails (its output bucket does not exist).
    broken = start_worker_process(resources.settings, "i-broken-storage", tmp_path / "broken.log",
                                  SIGHTFLEET_OUTPUT_BUCKET=f"{stack.prefix}-nowhere",
                                  # Its first receive is its last (FAILED at once, not after two redeliveries),
                                  # and its polls are short: see below.
                                  SIGHTFLEET_MAX_RECEIVE_COUNT="1", SIGHTFLEET_RECEIVE_WAIT_S="1", **AWS_TEST_ENV)
    try:
        ids = ids_of(upload(stack, 2))
        rows = final(resources, ids, 240)
    finally:
        broken.terminate()
        broken.wait(timeout=60)
    # A long poll the killed worker left open would still take a retried job and hold it, unanswered, for the
    # visibility timeout (SQS does the same): let it end first.
    time.sleep(1.5)
    assert {(r["status"], r["error"]["code"]) for r in rows} == {("FAILED", "STORAGE_UNAVAILABLE")}
    ops(stack, "PATCH", "/api/ops/fleet", {"max_instances": None})
    first = ops(stack, "POST", "/api/ops/retry", {"code": "STORAGE_UNAVAILABLE"})
    second = ops(stack, "POST", "/api/ops/retry", {"code": "STORAGE_UNAVAILABLE"})
    assert sorted(first["ids"]) == sorted(ids) and second["done"] == 0
    assert {r["status"] for r in final(resources, ids)} == {"SUCCEEDED"}
    time.sleep(3)   # a second processing, were there one, would finish meanwhile
    log = stack.log_text()
    assert [log.count(f"job {i} SUCCEEDED") for i in ids] == [1, 1]


def test_redrive_processes_the_valid_dead_letter_and_the_poison_returns(stack, resources):
    job = Job(id=new_image_id(), album="ops", filename="coffee.jpg", content_type="image/jpeg",
              submitted_at=iso(time.time()), size=0, owner="admin")
    data = jpeg_bytes("coffee", 0.3)
    job = replace(job, size=len(data), bucket=resources.inputs.name, key=Result.queued(job).input_key)
    resources.inputs.put(job.key, data, "image/jpeg")
    resources.results.create(Result.queued(job).to_dict())
    resources.dead_letters.send(job.to_message())
    resources.dead_letters.send('{"poison": true}')
    # The controller's sweep marks the job FAILED and hides both dead letters for minutes.
    wait_for(lambda: resources.results.get(job.id)["status"] == "FAILED", 60, 0.5, "the sweep")
    report = ops(stack, "POST", "/api/ops/redrive", {"rate_per_s": 5})
    assert report["done"] == 2
    assert final(resources, [job.id])[0]["status"] == "SUCCEEDED"
    wait_for(lambda: sum(resources.dead_letters.counts()[k] for k in ("visible", "in_flight")) == 1, 120, 0.5,
             "the poison back in the dead-letter queue")
    audit = ops(stack, "GET", "/api/ops/summary")["audit"]
    assert audit[0]["action"] == "redrive" and audit[0]["count"] == 2
