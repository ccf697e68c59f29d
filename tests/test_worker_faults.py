"""Every storage call of the worker's job path fails in turn (in-memory resources), with the real pipeline.

What must hold whatever fails: the worker keeps running, each job ends exactly once per receive
(acknowledged, handed back, or failed with a code), nothing accepted is lost, a final result is
never rewritten, and after the fault clears every job ends final.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from collections import Counter

import pytest

from app_tier import jobs
from app_tier.heartbeat import Heartbeat
from app_tier.jobs import BatchRunner
from app_tier.worker import Worker
from controller import dead_letters
from sightfleet.config import Settings
from sightfleet.contracts import ANONYMOUS_OWNER, FINAL_STATUSES, Job, Result, input_key, new_image_id, utc_now
from sightfleet.errors import ConditionFailed, Invalid, NotFound
from sightfleet.memory import memory_resources
from tests.support import jpeg_bytes, wait_for
from web_tier.submit import Submitter, Upload

pytestmark = pytest.mark.slow  # real pipeline, every fault in turn

# Every storage call on a job's way, as "<resource>.<method>".
JOB_PATH_CALLS = ["results.start", "inputs.put", "inputs.get", "outputs.put", "results.finish",
                  "responses.send_batch", "requests.delete_batch"]


@pytest.fixture(scope="module")
def pipeline():
    from app_tier.pipeline import Pipeline, PipelineSettings
    return Pipeline(PipelineSettings())


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(jobs, "RETRY_DELAY_S", 0)   # handed-back jobs are visible again at once


@pytest.fixture
def stack():
    """In-memory resources and their faults; visibility short enough that an unacknowledged job reappears."""
    return memory_resources(Settings(prefix="mem", max_receive_count=3, visibility_timeout_s=1))


def accept(resources, count: int = 2) -> list[str]:
    """Inline jobs through the real door, and one pointer job (original in the input bucket)."""
    submitter = Submitter(resources, resources.settings.max_upload_bytes)
    ids = [submitter.submit(Upload(jpeg_bytes(name, 0.4), f"{name}.jpg"))["id"]
           for name in ("chelsea", "coffee")[:count]]
    image_id = new_image_id()
    pointer = Job(id=image_id, album="default", filename="astronaut.jpg", content_type="image/jpeg",
                  submitted_at=utc_now(), size=1, bucket=resources.inputs.name,
                  key=input_key(ANONYMOUS_OWNER, image_id, "image/jpeg"))
    resources.inputs.put(pointer.key, jpeg_bytes("astronaut", 0.4), "image/jpeg")
    resources.results.create(Result.queued(pointer).to_dict())
    resources.requests.send(pointer.to_message())
    return ids + [pointer.id]


def run_batch(resources, pipeline, counters: Counter | None = None, wait_s: int = 0):
    """One batch as a worker runs it; returns the runner and its heartbeat."""
    heartbeat = Heartbeat(resources, "i-test", dict)
    runner = BatchRunner(resources, pipeline, "i-test", heartbeat, counters if counters is not None else Counter())
    intake = runner.take(resources.requests.receive(10, wait_s))
    if intake:
        runner.run(intake)
    runner.close()
    return runner, heartbeat


def drain(resources, pipeline, rounds: int = 8) -> None:
    """Run batches until the request queue is empty, waiting for unacknowledged jobs to reappear."""
    for _ in range(rounds):
        if not resources.requests.bodies():
            return
        run_batch(resources, pipeline, wait_s=3)
    assert not resources.requests.bodies(), "jobs still queued after the fault cleared"


def finals(resources, ids: list[str]) -> list[dict]:
    return [r for r in resources.results.get_many(ids) if r["status"] in FINAL_STATUSES]


def assert_each_final_once(resources, ids: list[str]) -> None:
    """Every job final, SUCCEEDED with labels, and its final document written exactly once."""
    for image_id in ids:
        result = resources.results.get(image_id)
        assert result["status"] == "SUCCEEDED" and result["labels"], result
        finals = [w for w in resources.results.writes if w["id"] == image_id and w["status"] in FINAL_STATUSES]
        assert len(finals) == 1, finals
        assert resources.outputs.get(result["result_key"])  # the result JSON is there too


@pytest.mark.parametrize("call", JOB_PATH_CALLS)
def test_one_failed_call_delays_only_its_job_and_loses_nothing(stack, pipeline, call):
    resources, faults = stack
    ids = accept(resources)
    faults.fail(call, times=1)
    _, heartbeat = run_batch(resources, pipeline)
    assert faults.calls[call] >= 1, f"{call} was never made"
    assert heartbeat.held() == [], "every message of the batch ended (acknowledged or handed back)"
    assert len(finals(resources, ids)) >= len(ids) - 1, "the other jobs were held back by one failure"
    drain(resources, pipeline)
    assert_each_final_once(resources, ids)
    assert resources.dead_letters.bodies() == []
    assert {json.loads(body)["id"] for body in resources.responses.bodies()} == set(ids)


def test_a_failed_hand_back_lets_the_job_reappear_when_its_visibility_lapses(stack, pipeline):
    resources, faults = stack
    ids = accept(resources, count=1)
    faults.fail("results.start", times=1)
    faults.fail("requests.set_visibility", times=1)
    run_batch(resources, pipeline)
    assert faults.calls["requests.set_visibility"] == 1 and len(finals(resources, ids)) == len(ids) - 1
    drain(resources, pipeline)
    assert_each_final_once(resources, ids)


@pytest.mark.parametrize("call, which", [("inputs.put", slice(0, -1)), ("inputs.get", slice(-1, None)),
                                         ("outputs.put", slice(None))])
def test_a_call_that_keeps_failing_ends_failed_with_a_reason_on_the_last_receive(stack, pipeline, call, which):
    resources, faults = stack
    ids = accept(resources)
    faults.fail(call)
    drain(resources, pipeline)
    affected = resources.results.get_many(ids[which])
    assert [r["status"] for r in affected] == ["FAILED"] * len(affected)
    assert {r["error"]["code"] for r in affected} == {"STORAGE_UNAVAILABLE"}
    assert all("gave up after 3 attempts" in r["error"]["message"] for r in affected)
    assert {r["attempts"] for r in affected} == {3}
    others = [r for r in resources.results.get_many(ids) if r not in affected]
    assert {r["status"] for r in others} <= {"SUCCEEDED"}


def test_a_result_that_can_never_be_written_is_dead_lettered_and_then_marked_failed(stack, pipeline):
    resources, faults = stack
    ids = accept(resources, count=1)
    faults.fail("results.finish")      # neither the result nor the failure can be recorded
    for _ in range(4):                 # the receive after the third moves it to the dead-letter queue
        run_batch(resources, pipeline)
    assert resources.requests.bodies() == [] and len(resources.dead_letters.bodies()) == len(ids)
    faults.clear()
    assert sorted(dead_letters.sweep(resources)) == sorted(ids)
    assert {r["error"]["code"] for r in resources.results.get_many(ids)} == {"PROCESSING_FAILED"}


def test_a_result_over_the_item_limit_ends_failed_result_too_large(stack, pipeline):
    resources, faults = stack
    [image_id, *_] = accept(resources, count=1)
    faults.fail("results.finish", Invalid("item of 512000 bytes is over the 350000-byte limit"),
                times=1, when=lambda result: result["status"] == "SUCCEEDED")
    run_batch(resources, pipeline)
    result = resources.results.get(image_id)
    assert result["status"] == "FAILED" and result["error"]["code"] == "RESULT_TOO_LARGE", result
    assert resources.requests.bodies() == []


def test_a_pointer_job_whose_original_is_gone_fails_missing_input(stack, pipeline):
    resources, _ = stack
    ids = accept(resources, count=1)
    resources.inputs.delete(resources.results.get(ids[-1])["input_key"])
    run_batch(resources, pipeline)
    pointer = resources.results.get(ids[-1])
    assert pointer["status"] == "FAILED" and pointer["error"]["code"] == "MISSING_INPUT"
    assert pointer["error"]["message"] == "the uploaded image is no longer stored"
    assert resources.results.get(ids[0])["status"] == "SUCCEEDED"
    assert resources.requests.bodies() == []


def test_a_missing_input_bucket_is_retried_not_missing_input(stack, pipeline):
    resources, faults = stack
    ids = accept(resources, count=1)
    faults.fail("inputs.get", NotFound("get s3://mem-input/originals/anonymous/x.jpg: NoSuchBucket"), times=1)
    run_batch(resources, pipeline)
    assert resources.results.get(ids[-1])["status"] == "PROCESSING"   # handed back, not failed
    drain(resources, pipeline)
    assert resources.results.get(ids[-1])["status"] == "SUCCEEDED"


def test_a_failed_read_of_a_finished_result_holds_back_no_other_message(stack, pipeline):
    """The reviewer's case: finish loses to another worker, then reading that worker's result fails."""
    resources, faults = stack
    ids = accept(resources)

    def another_worker_finished_first(result: dict) -> bool:
        if result["id"] != ids[0]:
            return False
        resources.results.docs[ids[0]] = {**result, "top_label": "Written by the other worker"}
        return True

    faults.fail("results.finish", ConditionFailed, times=1, when=another_worker_finished_first)
    faults.fail("results.get", times=1)
    counters = Counter()
    runner, heartbeat = run_batch(resources, pipeline, counters)   # close() returns
    assert counters == Counter(succeeded=len(ids) - 1)
    assert heartbeat.held() == []
    assert len(resources.requests.bodies()) == 1   # only that job, handed back to republish
    drain(resources, pipeline)
    assert resources.results.get(ids[0])["top_label"] == "Written by the other worker"   # the first final stands
    assert {json.loads(body)["id"] for body in resources.responses.bodies()} == set(ids)


def test_receive_and_heartbeat_failures_keep_the_worker_running(pipeline):
    resources, faults = memory_resources(Settings(prefix="mem", idle_grace_s=1.5, receive_wait_s=1))
    [instance_id] = resources.fleet.launch(1, "")
    ids = accept(resources, count=1)
    faults.fail("requests.receive", times=1)
    faults.fail("fleet_log.put", times=2)
    faults.fail("fleet.instances", times=1)   # cannot count the fleet once: stays up, asks again
    worker = Worker(resources, lambda: pipeline, instance_id)
    assert worker.work() == "idle"
    assert {r["status"] for r in resources.results.get_many(ids)} == {"SUCCEEDED"}
    assert resources.fleet.states[instance_id].state == "terminated"
    assert faults.calls["fleet.instances"] >= 2


def test_teardown_runs_whatever_close_raised(pipeline, monkeypatch):
    resources, faults = memory_resources(Settings(prefix="mem", idle_grace_s=0.5, receive_wait_s=1))
    [instance_id] = resources.fleet.launch(1, "")

    def broken_close(self):
        raise RuntimeError("close failed")

    monkeypatch.setattr(BatchRunner, "close", broken_close)
    faults.fail("requests.set_visibility")   # nothing to hand back, and even that would fail
    worker = Worker(resources, lambda: pipeline, instance_id)
    assert worker.work() == "idle"
    assert resources.fleet.states[instance_id].state == "terminated"
    assert resources.fleet_log.items[("worker", instance_id)]["state"] == "terminated"


def test_a_worker_whose_models_cannot_load_still_says_so_and_exits(pipeline):
    resources, _ = memory_resources(Settings(prefix="mem"))
    [instance_id] = resources.fleet.launch(1, "")

    def no_models():
        raise OSError("model file missing")

    with pytest.raises(OSError):
        Worker(resources, no_models, instance_id).work()
    assert resources.fleet_log.items[("worker", instance_id)]["state"] == "crashed"
    assert resources.fleet.states[instance_id].state == "running"   # a crash is restarted, not retired


def test_a_job_already_final_is_republished_not_recomputed(stack, pipeline):
    resources, faults = stack
    [image_id, *_] = accept(resources, count=1)
    drain(resources, pipeline)
    stored = resources.results.get(image_id)
    job = Job(id=image_id, album="default", filename="chelsea.jpg", content_type="image/jpeg",
              submitted_at=stored["submitted_at"], size=1,
              inline_b64=base64.b64encode(jpeg_bytes("chelsea", 0.4)).decode())
    resources.requests.send(job.to_message())
    counters = Counter()
    run_batch(resources, pipeline, counters)
    assert counters == Counter() and resources.results.get(image_id) == stored
    assert faults.calls["outputs.put"] >= 1 and resources.requests.bodies() == []


def test_a_request_storage_refuses_is_failed_at_once_not_retried(stack, pipeline):
    resources, faults = stack
    ids = accept(resources, count=1)
    faults.fail("inputs.put", Invalid("EntityTooLarge"), times=1)
    run_batch(resources, pipeline)
    result = resources.results.get(ids[0])
    assert result["status"] == "FAILED" and result["error"]["code"] == "STORAGE_REJECTED"
    assert result["attempts"] == 1   # failed on the first receive, not retried
    assert resources.results.get(ids[-1])["status"] == "SUCCEEDED"


def test_a_stopping_worker_hands_back_what_it_received_ahead_even_when_requeue_fails(stack, pipeline):
    resources, faults = stack
    ids = accept(resources)
    heartbeat = Heartbeat(resources, "i-test", dict)
    runner = BatchRunner(resources, pipeline, "i-test", heartbeat, Counter())
    ahead = runner.take(resources.requests.receive(10, 0))
    faults.fail("results.requeue")
    runner.hand_back(ahead)       # as a worker told to stop does with what it received ahead
    runner.close()
    assert heartbeat.held() == [] and resources.requests.counts()["visible"] == len(ids)   # visible at once
    faults.clear()
    drain(resources, pipeline)
    assert_each_final_once(resources, ids)


# The warm pool: the calls a worker makes on its way into the pool and back, and what a failure costs.
POOL_CALLS = {
    "fleet.stop": "retires instead",          # cannot stop into the pool: terminates its instance as before
    "fleet.instances": "looks again",         # cannot see whether it was started: the next look does
    "fleet_log.put": "carries on",            # the pooled or resumed heartbeat is lost; the next beat says it
}


def pool_settings(**changes) -> Settings:
    return Settings(**{"prefix": "mem", "idle_grace_s": 30, "pool_grace_s": 0.5, "warm_pool_size": 1,
                       "receive_wait_s": 1, "worker_heartbeat_s": 1, **changes})


def operate(resources, instance_id: str, steps) -> threading.Thread:
    """Run steps(errors) beside the worker, then SIGTERM this process so that work() returns."""
    errors: list[BaseException] = []

    def run():
        try:
            steps()
        except BaseException as exc:   # noqa: BLE001 - reported by the test after work() returns
            errors.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors
    thread.start()
    return thread


def state_of(resources, instance_id: str) -> str:
    return resources.fleet.states[instance_id].state


def test_an_idle_worker_goes_into_the_pool_and_carries_on_when_started(pipeline):
    resources, faults = memory_resources(pool_settings())
    [instance_id] = resources.fleet.launch(1, "")
    seen = {}

    def steps():
        wait_for(lambda: state_of(resources, instance_id) == "stopped", 20, 0.05, "the worker in the pool")
        seen["pooled"] = dict(resources.fleet_log.items[("worker", instance_id)])
        ids = accept(resources, count=1)
        time.sleep(1.5)   # in the pool, the queue is not polled: the jobs wait for the start
        seen["queued while pooled"] = len(resources.requests.bodies())
        resources.fleet.start([instance_id])
        wait_for(lambda: len(finals(resources, ids)) == len(ids), 60, 0.1, "the jobs done after the start")
        wait_for(lambda: state_of(resources, instance_id) == "stopped", 20, 0.05, "the worker in the pool again")

    thread = operate(resources, instance_id, steps)
    assert Worker(resources, lambda: pipeline, instance_id).work() == "stopped"
    thread.join(10)
    assert not thread.errors, thread.errors
    assert seen["pooled"]["state"] == "pooled" and seen["pooled"]["pooled_at"]
    assert seen["queued while pooled"] == 2
    final = resources.fleet_log.items[("worker", instance_id)]
    assert final["resumes"] == 1 and final["images_done"] == 2 and final["state"] == "stopped"
    assert 0 <= final["last_resume_s"] < 10 and final["pooled_s"] >= 1.5   # the pool's time, apart
    assert faults.calls["fleet.stop"] == 2 and state_of(resources, instance_id) == "stopped"


def test_a_full_pool_means_the_worker_retires(pipeline):
    resources, faults = memory_resources(pool_settings(idle_grace_s=1))
    resources.fleet.add("i-pooled", "stopped")
    [instance_id] = resources.fleet.launch(1, "")
    assert Worker(resources, lambda: pipeline, instance_id).work() == "idle"
    assert state_of(resources, instance_id) == "terminated" and faults.calls["fleet.stop"] == 0


def test_a_worker_that_cannot_stop_into_the_pool_retires(pipeline):
    resources, faults = memory_resources(pool_settings())
    [instance_id] = resources.fleet.launch(1, "")
    faults.fail("fleet.stop", times=1)
    assert Worker(resources, lambda: pipeline, instance_id).work() == "idle"
    assert state_of(resources, instance_id) == "terminated"
    assert resources.fleet_log.items[("worker", instance_id)]["state"] == "terminated"


@pytest.mark.parametrize("call", ["fleet.instances", "fleet_log.put"])
def test_a_failed_call_in_the_pool_costs_at_most_a_look(pipeline, call):
    resources, faults = memory_resources(pool_settings())
    [instance_id] = resources.fleet.launch(1, "")
    seen = {}

    def steps():
        wait_for(lambda: state_of(resources, instance_id) == "stopped", 20, 0.05, "the worker in the pool")
        faults.fail(call, times=2)
        before = faults.calls[call]
        resources.fleet.start([instance_id])
        wait_for(lambda: resources.fleet_log.items[("worker", instance_id)].get("resumes") == 1, 20, 0.05,
                 "the resumed worker's heartbeat")
        seen["calls"] = faults.calls[call] - before

    thread = operate(resources, instance_id, steps)
    assert Worker(resources, lambda: pipeline, instance_id).work() == "stopped"
    thread.join(10)
    assert not thread.errors, thread.errors
    assert seen["calls"] >= 3   # two failed, then one that worked
