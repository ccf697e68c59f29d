"""Poison on the request queue: any body at all is survived by the worker and by the dead-letter sweep.

Each case is a body and its expected answer: processed as usual, failed with a code, or left for
the dead-letter queue (and then marked FAILED by the sweep only when it names a valid image id
with a result row). Run against the in-memory queue (fast, every case) and once against moto
with a real worker process, the way the issue saw three workers crash in a row.
"""
from __future__ import annotations

import base64
import json
from collections import Counter

import pytest

from app_tier import jobs
from app_tier.heartbeat import Heartbeat
from app_tier.jobs import BatchRunner
from controller import dead_letters
from sightfleet.config import Settings
from sightfleet.contracts import Job, Result, new_image_id, utc_now
from sightfleet.memory import memory_resources
from sightfleet.resources import Resources
from tests.support import jpeg_bytes, start_worker_process, wait_for

pytestmark = pytest.mark.slow  # real pipeline and worker processes

GOOD = "good"          # processed as usual: SUCCEEDED
DEAD = "dead-letter"   # handed back until redrive takes it; the sweep marks nothing
DEAD_MARKED = "dead-letter, then FAILED INVALID_JOB by the sweep"


def job_doc(image_id: str, **changes) -> dict:
    """A well-formed inline job document (of a small real photo) with some fields changed."""
    job = Job(id=image_id, album="default", filename="chelsea.jpg", content_type="image/jpeg",
              submitted_at=utc_now(), size=100, inline_b64=base64.b64encode(jpeg_bytes("chelsea", 0.3)).decode())
    doc = {"v": 1, **{k: v for k, v in job.__dict__.items() if v is not None}}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not DROP}


DROP = object()
DEEP = "[" * 5000 + "]" * 5000

# (name, body maker taking a fresh image id, whether the id gets a QUEUED row first, expected answer)
CASES = [
    ("not JSON", lambda i: "{not json", False, DEAD),
    ("empty body", lambda i: "", False, DEAD),
    ("JSON array", lambda i: "[1, 2, 3]", False, DEAD),
    ("JSON number", lambda i: "5", False, DEAD),
    ("JSON string", lambda i: '"a job"', False, DEAD),
    ("JSON null", lambda i: "null", False, DEAD),
    ("5000 levels of nesting", lambda i: DEEP, False, DEAD),
    ("5000 levels inside a field", lambda i: json.dumps(job_doc(i))[:-1] + ',"x":' + DEEP + "}", True, DEAD),
    ("id is the number 5", lambda i: json.dumps(job_doc(i, id=5)), False, DEAD),
    ("id is a path", lambda i: json.dumps(job_doc(i, id="../../etc/passwd")), False, DEAD),
    ("size is a string", lambda i: json.dumps(job_doc(i, size="100")), True, DEAD_MARKED),
    ("size is negative", lambda i: json.dumps(job_doc(i, size=-1)), True, DEAD_MARKED),
    ("size is true", lambda i: json.dumps(job_doc(i, size=True)), True, DEAD_MARKED),
    ("album is a number", lambda i: json.dumps(job_doc(i, album=7)), True, DEAD_MARKED),
    ("album is hostile", lambda i: json.dumps(job_doc(i, album="<script>alert(1)</script>")), True, DEAD_MARKED),
    ("album is empty", lambda i: json.dumps(job_doc(i, album="")), True, DEAD_MARKED),
    ("album is padded", lambda i: json.dumps(job_doc(i, album=" default ")), True, DEAD_MARKED),
    ("filename is null", lambda i: json.dumps(job_doc(i, filename=None)), True, DEAD_MARKED),
    ("content type is GIF", lambda i: json.dumps(job_doc(i, content_type="image/gif")), True, DEAD_MARKED),
    ("submitted_at is not a time", lambda i: json.dumps(job_doc(i, submitted_at="yesterday")), True, DEAD_MARKED),
    ("version is a string", lambda i: json.dumps(job_doc(i, v="1")), True, DEAD_MARKED),
    ("unknown version", lambda i: json.dumps(job_doc(i, v=2)), True, DEAD_MARKED),
    ("no version", lambda i: json.dumps(job_doc(i, v=DROP)), True, DEAD_MARKED),
    ("bad base64", lambda i: json.dumps(job_doc(i, inline_b64="not*base64!")), True, DEAD_MARKED),
    ("base64 is a number", lambda i: json.dumps(job_doc(i, inline_b64=123)), True, DEAD_MARKED),
    ("both inline and pointer", lambda i: json.dumps(job_doc(i, bucket="b", key="k")), True, DEAD_MARKED),
    ("neither inline nor pointer", lambda i: json.dumps(job_doc(i, inline_b64=DROP)), True, DEAD_MARKED),
    ("a body of 200 KB", lambda i: json.dumps(job_doc(i, filename="x" * 200_000)), True, DEAD_MARKED),
    ("dead-lettered with no result row", lambda i: json.dumps(job_doc(i, size="1")), False, DEAD),
    ("unknown fields are ignored", lambda i: json.dumps(job_doc(i, colour="blue", nested={"a": [1]})), True, GOOD),
    ("hostile file name is only a name", lambda i: json.dumps(job_doc(i, filename="../<img src=x onerror=1>\u202e.jpg")),
     True, GOOD),
]


@pytest.fixture(scope="module")
def pipeline():
    from app_tier.pipeline import Pipeline, PipelineSettings
    return Pipeline(PipelineSettings())


def queue_cases(resources, queue) -> dict[str, tuple[str, str]]:
    """Every case on the queue (with its QUEUED row where it has one); case name -> (image id, expected)."""
    sent = {}
    for name, body, has_row, expected in CASES:
        image_id = new_image_id()
        if has_row:
            resources.results.create(Result.queued(Job.from_message(json.dumps(job_doc(image_id)))).to_dict())
        queue.send(body(image_id))
        sent[name] = (image_id, expected)
    return sent


# What each expected answer means for the result row, after the worker and the sweep, or the sweep alone.
AFTER_WORKER = {GOOD: ("SUCCEEDED", None), DEAD_MARKED: ("FAILED", "INVALID_JOB"), DEAD: None}
AFTER_SWEEP_ALONE = {GOOD: ("FAILED", "PROCESSING_FAILED"), DEAD_MARKED: ("FAILED", "INVALID_JOB"), DEAD: None}


def check_answers(resources, sent: dict[str, tuple[str, str]], meaning: dict) -> None:
    """Each case's row as its expected answer says; None: nothing marked (no row, or still QUEUED)."""
    for name, (image_id, expected) in sent.items():
        rows = resources.results.get_many([image_id])
        want = meaning[expected]
        if want is None:
            assert rows == [] or rows[0]["status"] == "QUEUED", (name, rows)
            continue
        assert rows, (name, "no result row")
        status, code = want
        assert rows[0]["status"] == status and (rows[0]["error"] or {}).get("code") == code, (name, rows[0])
        if status == "SUCCEEDED":
            assert rows[0]["labels"], name


def test_every_poison_body_is_survived_and_answered(pipeline, monkeypatch):
    monkeypatch.setattr(jobs, "RETRY_DELAY_S", 0)
    resources, _ = memory_resources(Settings(prefix="mem", max_receive_count=2))
    sent = queue_cases(resources, resources.requests)
    counters = Counter()
    for _ in range(4):   # two receives each, then redrive on the next
        runner = BatchRunner(resources, pipeline, "i-poison", Heartbeat(resources, "i-poison", dict), counters)
        while messages := resources.requests.receive(10, 0):
            runner.run(runner.take(messages))
        runner.close()
    assert resources.requests.bodies() == []
    assert counters == Counter(succeeded=sum(1 for *_, expected in CASES if expected == GOOD))
    dead = len(CASES) - counters["succeeded"]
    assert len(resources.dead_letters.bodies()) == dead
    while resources.dead_letters.counts()["visible"]:
        dead_letters.sweep(resources, 10)
    check_answers(resources, sent, AFTER_WORKER)


def test_the_sweep_survives_any_dead_letter_and_marks_only_valid_ids_with_rows():
    resources, _ = memory_resources(Settings(prefix="mem"))
    sent = queue_cases(resources, resources.dead_letters)
    marked = []
    while resources.dead_letters.counts()["visible"]:
        marked += dead_letters.sweep(resources, 10)
    check_answers(resources, sent, AFTER_SWEEP_ALONE)
    assert len(marked) == sum(1 for _, _, has_row, expected in CASES if has_row and expected != DEAD)


def test_a_worker_process_on_moto_survives_the_poison_that_crashed_three(settings_factory, tmp_path):
    """The issue's case, for real: `id` the number 5 (and the rest of the corpus) before a good job."""
    settings = settings_factory(max_receive_count=1, visibility_timeout_s=5)
    resources = Resources.connect(settings)
    for name, body, _, expected in CASES:
        if expected != GOOD:
            resources.requests.send(body(new_image_id()))
    good_id = new_image_id()
    resources.results.create(Result.queued(Job.from_message(json.dumps(job_doc(good_id)))).to_dict())
    resources.requests.send(json.dumps(job_doc(good_id)))
    log_path = tmp_path / "worker.log"
    proc = start_worker_process(settings, "i-poison", log_path, SIGHTFLEET_IDLE_GRACE_S="600")
    try:
        wait_for(lambda: resources.results.get(good_id)["status"] == "SUCCEEDED", 90, what="the good job")
        wait_for(lambda: resources.dead_letters.counts()["visible"] == len(CASES) - 2, 30,
                 what="every poison message in the dead-letter queue")
        assert proc.poll() is None, "the worker died"
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert text.count("is not a job") == len(CASES) - 2


def test_a_valid_job_dead_lettered_before_its_row_was_written_gets_a_failed_row():
    """The web tier sends a job before it writes its row; if it died in between, the sweep writes the row."""
    resources, _ = memory_resources(Settings(prefix="mem"))
    image_id = new_image_id()
    resources.dead_letters.send(json.dumps(job_doc(image_id)))
    assert dead_letters.sweep(resources) == [image_id]
    result = resources.results.get(image_id)
    assert result["status"] == "FAILED" and result["error"]["code"] == "PROCESSING_FAILED"
    assert result["filename"] == "chelsea.jpg"


def test_a_dead_letter_storage_refuses_for_good_is_not_retried_every_tick():
    """Invalid (a request that can never succeed) waits for the next RECHECK_S look; Unavailable comes back at once."""
    from sightfleet.errors import Invalid, Unavailable
    resources, faults = memory_resources(Settings(prefix="mem"))
    image_id = new_image_id()
    resources.results.create(Result.queued(Job.from_message(json.dumps(job_doc(image_id)))).to_dict())
    resources.dead_letters.send(json.dumps(job_doc(image_id, size="1")))
    faults.fail("results.finish", Invalid("ValidationException"), times=1)
    assert dead_letters.sweep(resources) == []
    assert resources.dead_letters.counts()["visible"] == 0   # left for the recheck, not retried each tick
    resources.dead_letters.send(json.dumps(job_doc(new_image_id(), size="1")))
    faults.fail("results.get", Unavailable("throttled"), times=1)
    assert dead_letters.sweep(resources) == []
    assert resources.dead_letters.counts()["visible"] == 1   # handed back for the next tick


def test_a_row_that_cannot_be_written_for_a_rowless_dead_letter_is_tried_again_next_sweep():
    from sightfleet.errors import Unavailable
    resources, faults = memory_resources(Settings(prefix="mem"))
    image_id = new_image_id()
    resources.dead_letters.send(json.dumps(job_doc(image_id)))
    faults.fail("results.create", Unavailable("throttled"), times=1)
    assert dead_letters.sweep(resources) == []
    assert dead_letters.sweep(resources) == [image_id]   # handed back at once, marked on the next sweep
    other = new_image_id()
    resources.dead_letters.send(json.dumps(job_doc(other)))
    faults.fail("results.create", Unavailable("throttled"), times=1)
    faults.fail("dead_letters.set_visibility", Unavailable("throttled"), times=1)
    assert dead_letters.sweep(resources) == []   # neither went through: seen again after RECHECK_S, no crash
    assert resources.results.get_many([other]) == []
