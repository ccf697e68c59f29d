"""The worker against a real moto endpoint with the real pipeline: storage, idempotency, lifecycle."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections import Counter

import pytest

from app_tier.batches import Batches
from app_tier.heartbeat import Heartbeat
from app_tier.jobs import BatchRunner
from app_tier.worker import Worker
from sightfleet.contracts import Job
from tests.support import jpeg_bytes, start_worker_process, wait_for
from web_tier.submit import Submitter, Upload

pytestmark = pytest.mark.slow  # real pipeline and workers


@pytest.fixture(scope="session")
def pipeline():
    from app_tier.pipeline import Pipeline, PipelineSettings
    return Pipeline(PipelineSettings())


def submit(resources, *uploads: Upload) -> list[dict]:
    submitter = Submitter(resources, resources.settings.max_upload_bytes)
    return [submitter.submit(u) for u in uploads]


def run_once(resources, pipeline, counters=None) -> Counter:
    counters = counters if counters is not None else Counter()
    heartbeat = Heartbeat(resources, "i-test", dict)
    messages = resources.requests.receive(10, 1)
    runner = BatchRunner(resources, pipeline, "i-test", heartbeat, counters)
    runner.run(runner.take(messages))
    runner.close()
    return counters


def test_batch_writes_every_output_then_acknowledges(resources, pipeline):
    good, = submit(resources, Upload(jpeg_bytes(), "chelsea.jpg", "pets"))
    counters = run_once(resources, pipeline)
    assert counters == Counter(succeeded=1)
    result = resources.results.get(good["id"])
    assert result["status"] == "SUCCEEDED" and result["instance_id"] == "i-test" and result["attempts"] == 1
    assert any("cat" in label["Name"].lower() for label in result["labels"])
    assert result["top_label"] == "Cat" and result["label_model_version"] == pipeline.label_model_version
    assert result["input_key"] == f"originals/anonymous/{good['id']}.jpg"
    assert resources.inputs.get(result["input_key"]) == jpeg_bytes()
    assert resources.outputs.get(result["thumbnail_key"])[:3] == b"\xff\xd8\xff"
    assert resources.outputs.get(result["annotated_key"])[:3] == b"\xff\xd8\xff"
    assert json.loads(resources.outputs.get(result["result_key"])) == result
    [response] = resources.responses.receive(10, 1)
    assert json.loads(response.body)["id"] == good["id"]
    assert resources.requests.counts() == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_each_image_tells_its_stage_as_it_moves_on(resources, pipeline):
    """What operators see of a worker (GET /api/ops/workers): each held photo's stage, in order."""
    good, = submit(resources, Upload(jpeg_bytes(), "chelsea.jpg"))
    stages: list[tuple[str, str]] = []
    runner = BatchRunner(resources, pipeline, "i-test", Heartbeat(resources, "i-test", dict), Counter(),
                         on_stage=lambda image_id, stage: stages.append((image_id, stage)))
    runner.run(runner.take(resources.requests.receive(10, 1)))
    runner.close()
    assert stages == [(good["id"], "fetching"), (good["id"], "recognising"), (good["id"], "storing")]


def test_bad_image_fails_once_with_a_reason_and_is_not_retried(resources, pipeline):
    # A JPEG cut short passes the door (its header is whole) but cannot be decoded.
    broken, = submit(resources, Upload(jpeg_bytes()[:9000], "broken.jpg"))
    good, = submit(resources, Upload(jpeg_bytes("coffee"), "coffee.jpg"))
    counters = run_once(resources, pipeline)
    assert counters == Counter(succeeded=1, failed=1)
    failed = resources.results.get(broken["id"])
    assert failed["status"] == "FAILED" and failed["error"]["code"] == "CORRUPT_IMAGE", failed
    assert resources.results.get(good["id"])["status"] == "SUCCEEDED"
    assert resources.requests.counts()["visible"] + resources.requests.counts()["in_flight"] == 0


def asking(monkeypatch, features: tuple[str, ...]) -> None:
    """Jobs made by the door from now on ask for `features` (the door's own choice of them is not built here)."""
    made = Submitter._job
    monkeypatch.setattr(Submitter, "_job", lambda self, checked: dataclasses.replace(made(self, checked),
                                                                                    features=features))


def test_a_jobs_features_decide_what_the_worker_answers(resources, pipeline, monkeypatch):
    asking(monkeypatch, ("text", "faces", "properties", "moderation"))
    asked, = submit(resources, Upload(jpeg_bytes("astronaut"), "astronaut.jpg"))
    assert run_once(resources, pipeline) == Counter(succeeded=1)
    result = resources.results.get(asked["id"])
    assert result["status"] == "SUCCEEDED" and result["labels"] == [] and result["top_label"] is None
    assert result["features"] == ["text", "faces", "properties", "moderation"]
    assert len(result["face_details"]) == 1 and result["face_details"][0]["Confidence"] > 70
    assert result["image_properties"]["DominantColors"] and result["review"] == {"flagged": False, "held": False}
    assert set(result["model_versions"]) == {"text", "faces", "properties", "moderation"}
    assert json.loads(resources.outputs.get(result["result_key"])) == result


def test_a_job_asking_for_an_unavailable_feature_fails_and_the_worker_goes_on(resources, pipeline, monkeypatch):
    monkeypatch.setitem(pipeline.stages.unavailable, "text", "RuntimeError: simulated")
    monkeypatch.delitem(pipeline.stages.loaded, "text")
    asking(monkeypatch, ("labels", "text"))
    blocked, = submit(resources, Upload(jpeg_bytes("coffee"), "coffee.jpg"))
    asking(monkeypatch, ("labels",))
    fine, = submit(resources, Upload(jpeg_bytes("chelsea"), "chelsea.jpg"))
    assert run_once(resources, pipeline) == Counter(succeeded=1, failed=1)
    failed = resources.results.get(blocked["id"])
    assert failed["status"] == "FAILED" and failed["error"]["code"] == "FEATURE_UNAVAILABLE"
    assert resources.results.get(fine["id"])["top_label"] == "Cat"


def test_redelivered_job_leaves_one_identical_result(resources, pipeline):
    first, = submit(resources, Upload(jpeg_bytes(), "chelsea.jpg"))
    run_once(resources, pipeline)
    stored = resources.results.get(first["id"])
    # The same job message again, as after a lost delete: nothing is recomputed or rewritten.
    job = Job(**{k: first[k] for k in ("id", "album", "filename", "content_type", "submitted_at", "size")},
              inline_b64=__import__("base64").b64encode(jpeg_bytes()).decode())
    resources.requests.send(job.to_message())
    counters = run_once(resources, pipeline)
    assert counters == Counter()
    assert resources.results.get(first["id"]) == stored
    assert json.loads(resources.outputs.get(stored["result_key"])) == stored
    assert len(resources.responses.receive(10, 1)) == 2  # republished, same content
    assert resources.requests.counts()["visible"] + resources.requests.counts()["in_flight"] == 0


def test_not_a_job_is_left_for_the_dead_letter_queue(settings_factory, pipeline):
    from sightfleet.resources import Resources
    resources = Resources.connect(settings_factory(max_receive_count=1))
    resources.requests.send("{not json")
    run_once(resources, pipeline)
    wait_for(lambda: resources.requests.receive(1, 1) == [] and resources.dead_letters.counts()["visible"] == 1,
             15, what="the poison message to reach the dead-letter queue")


def test_idle_worker_terminates_its_own_instance(settings_factory, pipeline):
    from sightfleet.resources import Resources
    resources = Resources.connect(settings_factory(idle_grace_s=2, receive_wait_s=1))
    [instance_id] = resources.fleet.launch(1, "#!/bin/bash\n")
    worker = Worker(resources, lambda: pipeline, instance_id)
    assert worker.work() == "idle"
    assert resources.fleet.instances() == []
    beats = {d["instance_id"]: d for d in resources.fleet_log.all("worker")}
    assert beats[instance_id]["state"] == "terminated"


def test_sigterm_finishes_the_current_batch_first(settings, resources, tmp_path):
    uploads = [Upload(jpeg_bytes(name), f"{name}.jpg") for name in ("chelsea", "coffee", "astronaut") * 3]
    accepted = submit(resources, *uploads)
    log_path = tmp_path / "worker.log"
    proc = start_worker_process(settings, "i-sigterm", log_path, SIGHTFLEET_IDLE_GRACE_S="600")
    try:
        wait_for(lambda: any(r["status"] != "QUEUED" for r in resources.results.get_many([a["id"] for a in accepted])),
                 60, interval_s=0.05, what="the worker to start the batch")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert "finishing the current batch first" in text and "i-sigterm" in text
    results = resources.results.get_many([a["id"] for a in accepted])
    done = [r for r in results if r["status"] == "SUCCEEDED"]
    # Everything it had started is finished; anything it had not received is still queued for others.
    assert done and all(r["status"] in ("SUCCEEDED", "QUEUED") for r in results)
    assert resources.requests.counts()["in_flight"] == 0


def test_heartbeat_keeps_held_messages_invisible_until_released(settings_factory):
    from sightfleet.resources import Resources
    resources = Resources.connect(settings_factory(visibility_timeout_s=3, worker_heartbeat_s=60))
    resources.requests.send("first")
    resources.requests.send("second")
    first, second = (resources.requests.receive(1, 1)[0] for _ in range(2))
    heartbeat = Heartbeat(resources, "i-test", dict)
    heartbeat.hold([first.receipt])
    heartbeat.hold([second.receipt])  # a second batch adds to what is held
    heartbeat.start()
    try:
        time.sleep(5)  # longer than the visibility timeout: only extensions keep them hidden
        assert resources.requests.receive(10, 1) == []
        heartbeat.release(first.receipt)
        heartbeat.release(second.receipt)
        assert wait_for(lambda: resources.requests.receive(10, 1), 10, what="released messages to reappear")
    finally:
        heartbeat.stop()


def receiving_two(resources, runner: BatchRunner) -> Batches:
    """Batches of two, as a worker receives them: a long poll, or one made ahead while a full batch runs."""
    return Batches(runner, lambda: resources.requests.receive(2, 1), lambda: resources.requests.receive(2, 0), 2)


def test_a_batch_taken_ahead_runs_next_or_goes_back_queued(resources, pipeline):
    accepted = submit(resources, *[Upload(jpeg_bytes("chelsea", 0.5), f"cat-{i}.jpg") for i in range(4)])
    ids = [a["id"] for a in accepted]
    runner = BatchRunner(resources, pipeline, "i-test", Heartbeat(resources, "i-test", dict), Counter())
    batches = receiving_two(resources, runner)
    runner.run(next(iter(batches)))
    ahead = batches.ahead()
    assert ahead is not None and len(ahead.messages) == 2
    runner.hand_back(ahead)  # as a worker told to stop does with what it received ahead
    runner.close()
    statuses = {r["id"]: r["status"] for r in resources.results.get_many(ids)}
    assert sorted(statuses.values()) == ["QUEUED", "QUEUED", "SUCCEEDED", "SUCCEEDED"]
    assert resources.requests.counts()["visible"] == 2  # handed back at once, not after a timeout
    run_once(resources, pipeline)  # the next worker takes them as usual
    assert {r["status"] for r in resources.results.get_many(ids)} == {"SUCCEEDED"}


def test_the_next_batch_is_prepared_before_this_one_is_finished(resources, pipeline, monkeypatch):
    """With a batch received ahead, the models go straight on: its first images are submitted to the
    pipeline before this batch's last ones are collected, and then run as the next batch."""
    accepted = submit(resources, *[Upload(jpeg_bytes(n, 0.5), f"{n}.jpg") for n in ("chelsea", "coffee") * 2])
    names = {a["id"]: a["filename"] for a in accepted}
    calls, submit_real, collect_real = [], pipeline.submit, pipeline.collect

    def submit_recorded(inputs):
        calls.append(("submit", [names[i.id] for i in inputs]))
        return submit_real(inputs)

    def collect_recorded(pending):
        outcomes = collect_real(pending)
        calls.append(("collect", [names[o.id] for o in outcomes]))
        return outcomes

    monkeypatch.setattr(pipeline, "submit", submit_recorded)
    monkeypatch.setattr(pipeline, "collect", collect_recorded)
    counters = Counter()
    runner = BatchRunner(resources, pipeline, "i-test", Heartbeat(resources, "i-test", dict), counters)
    batches = receiving_two(resources, runner)
    each = iter(batches)
    runner.run(next(each))
    following = batches.ahead()
    assert following is not None
    first_collect = calls.index(next(c for c in calls if c[0] == "collect"))
    assert [kind for kind, _ in calls[:first_collect]] == ["submit"] * 4  # 2 of this batch, 2 of the next
    assert next(each) is following
    runner.run(following)
    assert batches.ahead() is None
    runner.close()
    assert sorted(n for kind, got in calls if kind == "collect" for n in got) == sorted(names.values())
    assert counters == Counter(succeeded=4)
    assert {r["status"] for r in resources.results.get_many(list(names))} == {"SUCCEEDED"}


def test_worker_receives_the_next_batch_while_a_full_one_runs(settings_factory, pipeline):
    from sightfleet.resources import Resources
    resources = Resources.connect(settings_factory(idle_grace_s=2, receive_wait_s=1, receive_batch=5))
    accepted = submit(resources, *[Upload(jpeg_bytes(n, 0.5), f"{n}.jpg") for n in ("chelsea", "coffee") * 6])
    [instance_id] = resources.fleet.launch(1, "#!/bin/bash\n")
    waits, receive = [], resources.requests.receive
    resources.requests.receive = lambda n, wait_s, *rest: waits.append(wait_s) or receive(n, wait_s, *rest)
    worker = Worker(resources, lambda: pipeline, instance_id)
    announced, announce = [], worker._heartbeat.announce
    worker._heartbeat.announce = lambda state: announced.append(state) or announce(state)
    assert worker.work() == "idle"
    assert 0 in waits  # a poll made ahead, without waiting, while a full batch ran
    busy = [i for i, state in enumerate(announced) if state == "busy"]
    assert len(busy) >= 2 and "idle" not in announced[busy[0]:busy[-1]]  # busy throughout the backlog
    results = resources.results.get_many([a["id"] for a in accepted])
    assert [r["status"] for r in results] == ["SUCCEEDED"] * 12
    assert {r["attempts"] for r in results} == {1}  # nothing redelivered: held from receive to delete
    assert worker.counters == Counter(succeeded=12)
    assert sum(len(resources.responses.receive(10, 1)) for _ in range(3)) == 12


def test_announced_state_is_written_at_once(settings_factory):
    from sightfleet.resources import Resources
    resources = Resources.connect(settings_factory(worker_heartbeat_s=60))
    heartbeat = Heartbeat(resources, "i-announce", dict)
    heartbeat.start()
    try:
        heartbeat.announce("busy")  # the timer alone would next write a minute from now
        wait_for(lambda: [d["state"] for d in resources.fleet_log.all("worker")] == ["busy"], 5,
                 what="the announced state")
        [written] = resources.fleet_log.all("worker")
        heartbeat.announce("busy")  # no change: nothing to write
        time.sleep(1.5)
        assert resources.fleet_log.all("worker") == [written]
    finally:
        heartbeat.stop()


def test_background_threads_run_at_lower_priority():
    from concurrent.futures import ThreadPoolExecutor

    from sightfleet.procs import BACKGROUND_NICE, lower_priority
    main = os.getpriority(os.PRIO_PROCESS, 0)
    with ThreadPoolExecutor(1, initializer=lower_priority) as pool:
        background = pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    assert background == min(19, BACKGROUND_NICE) and os.getpriority(os.PRIO_PROCESS, 0) == main


def test_a_worker_process_runs_its_models_ahead_of_its_main_thread():
    """`python -m app_tier` loads the models on their own thread, then its main thread (which feeds them) yields."""
    from app_tier.__main__ import load_pipeline
    from app_tier.startup import LoadingPipeline
    from sightfleet.config import Settings
    from sightfleet.procs import FEEDER_NICE

    def nice():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    got = {}

    def feed():     # a thread of its own stands for the main thread: lowering a priority cannot be undone
        got["before"], feeder = nice(), threading.get_native_id()
        pipeline = LoadingPipeline(lambda: load_pipeline(Settings(), feeder)).wait()
        got["main"], got["models"] = nice(), pipeline._models.submit(nice).result()

    thread = threading.Thread(target=feed)
    thread.start()
    thread.join()
    assert got["main"] == max(got["before"], min(19, FEEDER_NICE)) and got["models"] == got["before"]
