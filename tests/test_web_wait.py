"""The batched result waiter against a real results table on the moto endpoint."""
from __future__ import annotations

import threading
import time

import boto3

from sightfleet.contracts import Job, new_image_id, queued_result, utc_now
from tests.test_web_helpers import finish
from web_tier.waiting import ResultWaiter


def queued(resources, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        job = Job(id=new_image_id(), album="w", filename="w.jpg", content_type="image/jpeg",
                  submitted_at=utc_now(), size=1, inline_b64="")
        resources.results.create(queued_result(job))
        ids.append(job.id)
    return ids


def wait_in_threads(waiter, groups: list[list[str]], timeout_s: float) -> list:
    answers = [None] * len(groups)

    def wait(index: int) -> None:
        answers[index] = waiter.wait(groups[index], timeout_s)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(groups))]
    for thread in threads:
        thread.start()
    return answers, threads


def test_many_waiters_share_one_batch_read_per_round(resources):
    ids = queued(resources, 40)
    waiter = ResultWaiter(resources.results, interval_s=0.2)
    groups = [[i] for i in ids[:30]] + [ids[30:35], ids[35:]]  # single waits and multi-image waits
    answers, threads = wait_in_threads(waiter, groups, 30)
    time.sleep(0.5)
    started = time.monotonic()
    for image_id in ids:
        finish(resources, image_id, "FAILED" if image_id in ids[35:] else "SUCCEEDED")
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started + 0.5
    assert all(a is not None for a in answers)
    assert [[r["id"] for r in a] for a in answers] == groups
    assert {r["status"] for r in answers[-1]} == {"FAILED"}
    # One read per round for all 32 waiters, not one each: about elapsed / interval reads.
    assert waiter.batch_reads <= elapsed / 0.2 + 3, (waiter.batch_reads, elapsed)


def test_timeout_gives_none_and_the_poller_stops_when_nobody_waits(resources):
    [image_id] = queued(resources, 1)
    waiter = ResultWaiter(resources.results, interval_s=0.1, idle_exit_s=0.3)
    started = time.monotonic()
    assert waiter.wait([image_id], 0.5) is None
    assert 0.45 < time.monotonic() - started < 3
    time.sleep(1.0)
    reads = waiter.batch_reads
    assert not waiter.is_polling
    time.sleep(0.5)
    assert waiter.batch_reads == reads  # no polling while nobody waits
    finish(resources, image_id)
    assert waiter.wait([image_id], 5)[0]["status"] == "SUCCEEDED"  # and it starts again on demand


def test_an_unreachable_table_makes_waits_time_out_not_crash(resources, settings):
    [image_id] = queued(resources, 1)
    waiter = ResultWaiter(resources.results, interval_s=0.1)
    boto3.client("dynamodb", endpoint_url=settings.endpoint_url, region_name=settings.region).delete_table(
        TableName=settings.names.results_table)
    assert waiter.wait([image_id], 0.6) is None
    assert waiter.batch_reads >= 2  # it kept trying


class FailingFirst:
    """The real results table, whose first batch reads raise what a bug or a botocore surprise would."""

    def __init__(self, results, *errors: BaseException):
        self._results, self._errors = results, list(errors)

    def get_many(self, image_ids: list[str]) -> list[dict]:
        if self._errors:
            raise self._errors.pop(0)
        return self._results.get_many(image_ids)


def test_the_poller_carries_on_after_an_unexpected_error(resources):
    [image_id] = queued(resources, 1)
    finish(resources, image_id)
    waiter = ResultWaiter(FailingFirst(resources.results, RuntimeError("boom"), KeyError("status")), interval_s=0.05)
    done = waiter.wait([image_id], 10)
    assert done is not None and done[0]["status"] == "SUCCEEDED"


def test_a_poller_that_dies_is_replaced_while_requests_wait(resources):
    [image_id] = queued(resources, 1)
    finish(resources, image_id)
    # SystemExit is not an Exception: it ends the thread itself, as no error inside a round can.
    waiter = ResultWaiter(FailingFirst(resources.results, SystemExit(3)), interval_s=0.05)
    done = waiter.wait([image_id], 10)
    assert done is not None and done[0]["status"] == "SUCCEEDED"
    assert waiter.wait([image_id], 5) is not None  # and later waits are served too
