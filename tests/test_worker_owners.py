"""A job never reaches past its owner: the claim leaves another owner's row alone, and a job pointing at another
owner's original is refused with FOREIGN_INPUT (against the local endpoint, with the real pipeline)."""
from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import replace

import boto3
import pytest

from controller import dead_letters
from sightfleet.contracts import Job, Result, foreign_input, input_key, new_image_id, queued_result, utc_now
from sightfleet.errors import ConditionFailed
from tests.support import jpeg_bytes
from tests.test_worker import pipeline, run_once, submit  # noqa: F401 - pipeline is a fixture
from web_tier.submit import Upload


def a_job(owner: str = "alice", **changes) -> Job:
    return Job(id=new_image_id(), album="trip", filename="x.jpg", content_type="image/jpeg", submitted_at=utc_now(),
               size=3, inline_b64="eHl6", owner=owner, **changes)


def test_a_claim_or_a_finish_never_takes_over_another_owners_row(resources):
    job = a_job()
    resources.results.create(queued_result(job))
    theirs = Result.queued(replace(job, owner="mallory")).processing("i-0mallory", 1)
    for write in (resources.results.start, resources.results.finish, resources.results.requeue):
        with pytest.raises(ConditionFailed):
            write(theirs.to_dict())
    with pytest.raises(ConditionFailed):
        resources.results.finish(theirs.failed("X", "taken over").to_dict())
    assert resources.results.get(job.id) == queued_result(job)   # untouched
    resources.results.start(Result.queued(job).processing("i-0alice", 1).to_dict())   # its owner's claim goes on
    assert resources.results.get(job.id)["status"] == "PROCESSING"


def test_a_row_from_before_owners_is_claimed_by_anonymous_jobs_only(resources, settings):
    job = a_job("anonymous")
    legacy = {k: v for k, v in queued_result(job).items() if k != "owner"}
    table = boto3.resource("dynamodb", endpoint_url=settings.endpoint_url,
                           region_name=settings.region).Table(settings.names.results_table)
    table.put_item(Item={"id": job.id, "kind": "result", "status": "QUEUED", "album": job.album,
                         "submitted_at": job.submitted_at, "updated_at": job.submitted_at,
                         "doc": json.dumps(legacy)})
    with pytest.raises(ConditionFailed):
        resources.results.start(Result.queued(replace(job, owner="mallory")).processing("i-1", 1).to_dict())
    resources.results.start(Result.queued(job).processing("i-1", 1).to_dict())
    assert resources.results.get(job.id)["status"] == "PROCESSING"


@pytest.mark.parametrize("key, problem", [
    (None, False),                                             # inline
    ("originals/alice/{id}.jpg", False),                       # its own original
    ("originals/bob/{id}.jpg", True),                          # another owner's
    ("originals/alice/01HZZZZZZZZZZZZZZZZZZZZZZZ.jpg", True),  # another image of the same owner
    ("originals/alice/{id}.png", True),                        # not the type it says
    ("../originals/alice/{id}.jpg", True),
])
def test_the_input_a_job_may_point_at(key, problem):
    job = a_job()
    if key is not None:
        job = replace(job, inline_b64=None, bucket="in", key=key.format(id=job.id))
    assert bool(foreign_input(job)) is problem


def test_the_worker_refuses_a_job_pointing_at_another_owners_original(resources, pipeline):  # noqa: F811
    alices = input_key("alice", new_image_id(), "image/jpeg")
    resources.inputs.put(alices, jpeg_bytes(), "image/jpeg")
    forged = replace(a_job("mallory"), inline_b64=None, bucket=resources.inputs.name, key=alices,
                     size=len(jpeg_bytes()))
    resources.requests.send(forged.to_message())
    assert run_once(resources, pipeline) == Counter(failed=1)   # and the worker goes on
    result = resources.results.get(forged.id)
    assert result["status"] == "FAILED" and result["error"]["code"] == "FOREIGN_INPUT", result
    assert alices in result["error"]["message"]
    # Its row never names the other original: deleting the forged image cannot delete alice's.
    assert result["input_key"] == input_key("mallory", forged.id, "image/jpeg") and not result.get("labels")
    assert resources.inputs.get(alices) == jpeg_bytes()
    assert resources.requests.counts() == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_the_worker_leaves_another_owners_image_alone_and_so_does_the_sweep(resources, pipeline):  # noqa: F811
    alices, = submit(resources, Upload(jpeg_bytes(), "chelsea.jpg", "pets", "alice"))
    forged = replace(a_job("mallory"), id=alices["id"], inline_b64=base64.b64encode(jpeg_bytes("coffee")).decode())
    resources.requests.send(forged.to_message())
    assert run_once(resources, pipeline) == Counter(succeeded=1)   # alice's job; the forged one changed nothing
    result = resources.results.get(alices["id"])
    assert result["owner"] == "alice" and result["filename"] == "chelsea.jpg" and result["status"] == "SUCCEEDED"
    [response] = resources.responses.receive(10, 1)
    assert json.loads(response.body)["filename"] == "chelsea.jpg"
    # The forged message is handed back (on its way to the dead-letter queue), never acknowledged.
    assert sum(resources.requests.counts().values()) == 1
    # In the dead-letter queue, it does not fail alice's image either, while her own dead letter does.
    pending = a_job("alice")
    resources.results.create(queued_result(pending))
    resources.dead_letters.send(replace(forged, id=pending.id).to_message())
    assert dead_letters.sweep(resources) == []
    assert resources.results.get(pending.id)["status"] == "QUEUED"
    resources.dead_letters.send(pending.to_message())
    assert pending.id in dead_letters.sweep(resources)
    assert resources.results.get(pending.id)["status"] == "FAILED"
