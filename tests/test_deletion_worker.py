"""Deleting an image the worker has not finished with: the tombstone refuses the worker's writes,
and the worker removes what it made, so no photo comes back and no file is left behind (in-memory resources,
real pipeline).
"""
from __future__ import annotations

import json
from collections import Counter

import pytest

from app_tier import jobs
from app_tier.heartbeat import Heartbeat
from app_tier.jobs import BatchRunner
from sightfleet.config import Settings
from sightfleet.contracts import DELETED, SUCCEEDED
from sightfleet.deletion import delete_image
from sightfleet.memory import memory_resources
from tests.pipeline_fixtures import shared_pipeline
from tests.support import jpeg_bytes, wait_for
from web_tier.submit import Submitter, Upload

pytestmark = pytest.mark.slow  # real pipeline


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(jobs, "RETRY_DELAY_S", 0)


@pytest.fixture
def stack():
    return memory_resources(Settings(prefix="mem", max_receive_count=3, visibility_timeout_s=1))


def accept(resources, owner: str = "alice") -> str:
    submitter = Submitter(resources, resources.settings.max_upload_bytes)
    return submitter.submit(Upload(jpeg_bytes(scale=0.4), "chelsea.jpg", "pets", owner))["id"]


def run_batch(resources, wait_s: int = 0) -> None:
    runner = BatchRunner(resources, shared_pipeline(), "i-test", Heartbeat(resources, "i-test", dict), Counter())
    intake = runner.take(resources.requests.receive(10, wait_s))
    if intake:
        runner.run(intake)
    runner.close()


def files_of(resources, image_id: str) -> list[str]:
    return [k for k in (*resources.inputs.objects, *resources.outputs.objects) if image_id in k]


def responses(resources) -> list[dict]:
    return [json.loads(body) for body in resources.responses.bodies()]


def test_an_image_deleted_while_queued_is_dropped_by_the_worker(stack):
    resources, _ = stack
    image_id = accept(resources)
    delete_image(resources, resources.results.get(image_id))
    run_batch(resources)
    assert resources.requests.bodies() == [], "the job is acknowledged, not retried"
    assert resources.results.get(image_id)["status"] == DELETED
    assert files_of(resources, image_id) == []   # not even the inline original the claim would have stored
    # The deletion announces itself, and the worker's acknowledgment republishes the tombstone: both say
    # DELETED of the same image (webhooks give both the same delivery id, so receivers drop the second).
    assert [(r["id"], r["status"]) for r in responses(resources)] == [(image_id, DELETED)] * 2


@pytest.mark.parametrize("call", ["start", "finish"])
def test_a_delete_while_the_worker_runs_leaves_nothing_behind(stack, monkeypatch, call):
    """The delete lands right after the worker's claim (it then stores its files after the delete's purge:
    the worker must remove them), or just before its final write (the delete's purge removes them)."""
    resources, _ = stack
    image_id = accept(resources)
    write = getattr(resources.results, call)

    def then_delete(result: dict) -> None:
        if call == "start":
            write(result)
        delete_image(resources, resources.results.get(image_id))
        if call == "finish":
            write(result)   # refused by the tombstone
    monkeypatch.setattr(resources.results, call, then_delete)
    run_batch(resources)
    assert resources.results.get(image_id)["status"] == DELETED
    assert files_of(resources, image_id) == [], "a file of the deleted image is left"
    assert resources.requests.bodies() == []


def test_a_redelivered_job_of_a_deleted_image_does_not_bring_it_back(stack):
    resources, faults = stack
    image_id = accept(resources)
    faults.fail("requests.delete_batch", times=1)   # finished, but the message stays and comes back
    run_batch(resources)
    assert resources.results.get(image_id)["status"] == SUCCEEDED and resources.requests.bodies()
    delete_image(resources, resources.results.get(image_id))
    assert files_of(resources, image_id) == []
    wait_for(lambda: resources.requests.counts()["visible"], 10, what="the job to be visible again")
    run_batch(resources)
    assert resources.results.get(image_id)["status"] == DELETED
    assert files_of(resources, image_id) == []
    assert resources.requests.bodies() == []
