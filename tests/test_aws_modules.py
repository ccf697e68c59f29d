"""The AWS modules' failure paths against a real moto server: what each storage call raises, and why.

NotFound for a missing queue, bucket, table, key or instance; ConditionFailed for a lost
conditional write; Invalid for a request that can never succeed (moto's own ValidationException,
InvalidParameterValue, botocore's parameter validation, an item over the size limit), raised
before DynamoDB is called where the project can tell. Timeouts and dead endpoints:
tests/test_aws_timeouts.py.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from sightfleet.aws.dynamodb import (ITEM_LIMIT_BYTES, MAX_ITEM_BYTES, FleetTable, NoSuchResult, ResultsTable,
                                     item_size)
from sightfleet.aws.ec2 import Fleet
from sightfleet.aws.s3 import Bucket, ensure_bucket
from sightfleet.aws.sqs import Queue, message_from
from sightfleet.interfaces import Message
from sightfleet.config import Settings
from sightfleet.contracts import FAILED, Job, failed_result, new_image_id, queued_result, tombstone, utc_now
from sightfleet.errors import ConditionFailed, Invalid, NoSuchObject, NotFound
from tests.support import unique_prefix


def a_result(album: str = "a", **changes) -> dict:
    job = Job(id=new_image_id(), album=album, filename="x.jpg", content_type="image/jpeg",
              submitted_at=utc_now(), size=3, inline_b64="eHl6")
    return {**queued_result(job), **changes}


@pytest.fixture
def bare(moto_server) -> Settings:
    """Settings of a stack never provisioned: every queue, bucket and table is missing."""
    return Settings(endpoint_url=moto_server, prefix=unique_prefix("gone"))


# --- missing resources: NotFound from every storage call ----------------------------------------

QUEUE_CALLS = {
    "send": lambda q: q.send("x"),
    "receive": lambda q: q.receive(1, 0),
    "send_batch": lambda q: q.send_batch(["x"]),
    "delete_batch": lambda q: q.delete_batch(["r"]),
    "set_visibility": lambda q: q.set_visibility(["r"], 0),
    "delete": lambda q: q.delete("r"),
    "counts": lambda q: q.counts(),
    "max_message_bytes": lambda q: q.max_message_bytes(),
}


@pytest.mark.parametrize("call", QUEUE_CALLS.values(), ids=QUEUE_CALLS.keys())
def test_every_queue_call_on_a_missing_queue_is_not_found(bare, call):
    with pytest.raises(NotFound, match="NonExistentQueue|QueueDoesNotExist"):
        call(Queue(bare, bare.names.request_queue))


BUCKET_CALLS = {
    "put": lambda b: b.put("k", b"x", "image/jpeg"),
    "get": lambda b: b.get("k"),
    "delete": lambda b: b.delete("k"),
    "check": lambda b: b.check(),
}


@pytest.mark.parametrize("call", BUCKET_CALLS.values(), ids=BUCKET_CALLS.keys())
def test_every_bucket_call_on_a_missing_bucket_is_not_found(bare, call):
    with pytest.raises(NotFound) as caught:
        call(Bucket(bare, bare.names.input_bucket))
    assert not isinstance(caught.value, NoSuchObject)   # a missing bucket is no missing image: it is retried


def test_a_missing_key_is_not_found_and_deleting_it_is_harmless(resources):
    with pytest.raises(NoSuchObject, match="NoSuchKey"):
        resources.inputs.get("never-written")
    resources.inputs.delete("never-written")   # S3 deletes are idempotent


def test_an_invalid_bucket_name_is_invalid_at_provisioning(moto_server):
    settings = Settings(endpoint_url=moto_server, prefix=unique_prefix(), input_bucket="ab")  # under 3 characters
    with pytest.raises(Invalid, match="InvalidBucketName"):
        ensure_bucket(settings, settings.names.input_bucket)


RESULTS_CALLS = {
    "create": lambda t: t.create(a_result()),
    "get": lambda t: t.get(new_image_id()),
    "get_many": lambda t: t.get_many([new_image_id()]),
    "start": lambda t: t.start(a_result()),
    "finish": lambda t: t.finish(a_result()),
    "requeue": lambda t: t.requeue(a_result()),
    "delete": lambda t: t.delete(new_image_id()),
    "page": lambda t: t.page(),
    "page_album": lambda t: t.page(album="a", status=FAILED),
    "completed_since": lambda t: t.completed_since(utc_now()),
    "albums": lambda t: t.albums("alice"),
    "page_owner": lambda t: t.page(owner="alice"),
    "page_owner_album": lambda t: t.page(album="a", owner="alice"),
    "replace_with_tombstone": lambda t: t.replace_with_tombstone(tombstone({"id": new_image_id(), "owner": "alice"})),
    "check": lambda t: t.check(),
}


@pytest.mark.parametrize("call", RESULTS_CALLS.values(), ids=RESULTS_CALLS.keys())
def test_every_results_call_on_a_missing_table_is_not_found(bare, call):
    with pytest.raises(NotFound, match="ResourceNotFoundException") as caught:
        call(ResultsTable(bare))
    assert not isinstance(caught.value, NoSuchResult)   # a missing table is out of reach, not a missing image


FLEET_CALLS = {
    "put": lambda t: t.put("worker", "i-1", {"state": "idle"}),
    "all": lambda t: t.all("worker"),
    "all_since": lambda t: t.all("decision", since_key=utc_now(), newest_first=True, limit=5),
    "get_many": lambda t: t.get_many("worker", ["i-1"]),
    "delete": lambda t: t.delete("worker", "i-1"),
}


@pytest.mark.parametrize("call", FLEET_CALLS.values(), ids=FLEET_CALLS.keys())
def test_every_fleet_table_call_on_a_missing_table_is_not_found(bare, call):
    with pytest.raises(NotFound, match="ResourceNotFoundException"):
        call(FleetTable(bare))


def test_terminating_an_unknown_instance_is_not_found(settings):
    with pytest.raises(NotFound, match="InvalidInstanceID.NotFound"):
        Fleet(settings).terminate(["i-0123456789abcdef0"])


def test_launching_from_a_missing_launch_template_is_not_found(settings):
    fleet = Fleet(settings.with_changes(launch_template=f"{settings.prefix}-no-such-template"))
    with pytest.raises(NotFound, match="LaunchTemplate"):
        fleet.launch(1, "#!/bin/sh\n")
    assert fleet.instances() == []


# --- lost conditional writes: ConditionFailed ----------------------------------------------------

def test_writes_after_the_final_one_lose(resources):
    result = a_result()
    resources.results.create(result)
    with pytest.raises(ConditionFailed):
        resources.results.create(result)
    final = failed_result(result, "X", "first")
    resources.results.finish(final)
    for write in (resources.results.start, resources.results.finish, resources.results.requeue):
        with pytest.raises(ConditionFailed):
            write(failed_result(result, "Y", "second"))
    assert resources.results.get(result["id"]) == final


# --- requests that can never succeed: Invalid ----------------------------------------------------

def test_an_empty_key_is_invalid_not_unavailable(resources):
    """moto answers ValidationException (an AttributeValue may not be an empty string)."""
    with pytest.raises(Invalid, match="ValidationException"):
        resources.results.get("")
    with pytest.raises(Invalid, match="ValidationException"):
        resources.results.create(a_result(id=""))


def test_a_message_over_the_queue_size_limit_is_invalid(resources):
    too_big = "x" * (resources.requests.max_message_bytes() + 1)
    with pytest.raises(Invalid, match="InvalidParameterValue"):
        resources.requests.send(too_big)
    assert resources.requests.send_batch(["small", too_big]) == [0, 1]   # the call of ten failed as a whole
    assert resources.requests.counts()["visible"] == 0


def test_a_parameter_botocore_refuses_is_invalid(resources):
    with pytest.raises(Invalid, match="MessageBody"):
        resources.requests.send(5)
    with pytest.raises(Invalid, match="MaxNumberOfMessages"):
        resources.requests.receive(11, 0)   # SQS's own check: InvalidParameterValue


def test_values_cloudwatch_refuses_are_invalid(resources):
    with pytest.raises(Invalid, match="InvalidParameterValue"):
        resources.metrics.put({"latency": float("nan")})
    now = datetime.now(timezone.utc)
    with pytest.raises(Invalid, match="ValidationError"):
        resources.metrics.series(["latency"], start=now, end=now - timedelta(hours=1))


# --- receipts that are stale or malformed --------------------------------------------------------

def test_visibility_changes_report_stale_receipts_and_apply_the_rest(resources, caplog):
    queue = resources.requests
    queue.send_batch(["done", "kept"])
    done, kept = sorted(queue.receive(10, 1), key=lambda m: m.body)
    queue.delete(done.receipt)
    with caplog.at_level(logging.WARNING, logger="sightfleet.aws.sqs"):
        assert queue.set_visibility([done.receipt, "garbage", kept.receipt], 0) == [done.receipt, "garbage"]
    assert caplog.text.count("ReceiptHandleIsInvalid") == 2
    assert [m.body for m in queue.receive(10, 1)] == ["kept"]   # handed back despite the failures


def test_deletes_of_stale_receipts(resources):
    queue = resources.requests
    queue.send_batch(["a", "b"])
    first, second = queue.receive(10, 1)
    queue.delete(first.receipt)
    queue.delete(first.receipt)   # already deleted: SQS (and moto) answer success
    with pytest.raises(Invalid, match="ReceiptHandleIsInvalid"):
        queue.delete("garbage")
    assert queue.delete_batch(["garbage", second.receipt]) == ["garbage"]   # each entry's fate is its own
    assert queue.counts() == {"visible": 0, "in_flight": 0, "delayed": 0}   # the good one went


def test_a_wait_past_sqs_limit_is_clamped_not_refused(resources):
    resources.requests.send("ready")
    assert [m.body for m in resources.requests.receive(1, wait_s=25)] == ["ready"]


@pytest.mark.parametrize("attributes, count", [
    (None, 1), ({}, 1), ({"ApproximateReceiveCount": "3"}, 3), ({"ApproximateReceiveCount": "x"}, 1),
    ({"ApproximateReceiveCount": ""}, 1), ({"ApproximateReceiveCount": "0"}, 1),
    ({"ApproximateReceiveCount": None}, 1), ({"ApproximateReceiveCount": "2.5"}, 1),
])
def test_receive_count_absent_or_malformed_counts_one(attributes, count):
    raw = {"MessageId": "m", "ReceiptHandle": "r", "Body": "b"}
    if attributes is not None:
        raw["Attributes"] = attributes
    assert message_from(raw) == Message("m", "r", "b", count)


def test_received_messages_carry_their_receive_count(resources):
    resources.requests.send("again")
    [first] = resources.requests.receive(1, 1)
    resources.requests.set_visibility([first.receipt], 0)
    [second] = resources.requests.receive(1, 1)
    assert (first.receive_count, second.receive_count) == (1, 2)


# --- items bounded below DynamoDB's 400 KB ----------------------------------------------------------

@pytest.mark.parametrize("item, size", [
    ({"id": "abc"}, 2 + 3),
    ({"name": "é€"}, 4 + 5),                    # UTF-8 bytes, not characters
    ({"n": 12345}, 1 + 4),                      # three bytes for five digits, plus one
    ({"flag": True, "none": None}, 4 + 1 + 4 + 1),
    ({"m": {"k": ["ab", 7]}}, 1 + 3 + (1 + (3 + 2 + 1 + 2 + 1) + 1)),
])
def test_item_size_counts_as_dynamodb_does(item, size):
    assert item_size(item) == size


def test_the_limit_leaves_a_margin_below_dynamodbs():
    assert 300 * 1024 < MAX_ITEM_BYTES < ITEM_LIMIT_BYTES == 409600


def test_an_oversized_result_is_refused_before_dynamodb(resources):
    result = a_result()
    resources.results.create(result)
    # Under DynamoDB's 400 KB, so only the project's own bound can refuse it.
    huge = {**result, "status": "SUCCEEDED", "metadata": {"camera_make": "x" * (MAX_ITEM_BYTES + 1000)}}
    assert len(json.dumps(huge)) + 1000 < ITEM_LIMIT_BYTES
    refusal = rf"{result['id']}: the item is \d+ bytes, over the limit of {MAX_ITEM_BYTES} bytes"
    for write in (resources.results.start, resources.results.finish, resources.results.requeue):
        with pytest.raises(Invalid, match=refusal):
            write(huge)
    assert resources.results.get(result["id"]) == result
    with pytest.raises(Invalid, match="over the limit"):
        resources.results.create(a_result(metadata={"camera_make": "x" * (MAX_ITEM_BYTES + 1000)}))


def test_a_large_result_within_the_limit_is_written_whole(resources):
    result = a_result(album="é", metadata={"camera_make": "é€" * 1000 + "x" * 300_000})
    resources.results.create(result)
    assert resources.results.get(result["id"]) == result


def test_an_oversized_fleet_document_is_refused(resources):
    with pytest.raises(Invalid, match="put worker i-big"):
        resources.fleet_log.put("worker", "i-big", {"note": "x" * MAX_ITEM_BYTES})
    assert resources.fleet_log.get_many("worker", ["i-big"]) == {}
    resources.fleet_log.put("worker", "i-fine", {"note": "x" * 300_000})
    assert len(resources.fleet_log.get_many("worker", ["i-fine"])["i-fine"]["note"]) == 300_000


def test_a_batch_call_keeps_the_fate_of_each_group_of_ten(resources):
    """Fifteen sends, the second call of ten refused as a whole: the first ten went out, and are not reported."""
    too_big = "x" * (resources.requests.max_message_bytes() + 1)
    assert resources.requests.send_batch([f"small {n}" for n in range(10)] + [too_big] * 5) == list(range(10, 15))
    assert resources.requests.counts()["visible"] == 10


def test_replacing_a_row_with_its_tombstone_twice_says_the_second_time_that_it_was_one_already(resources):
    from sightfleet.contracts import new_image_id, tombstone
    tombstone_row = tombstone({"id": new_image_id(), "owner": "alice"})
    assert resources.results.replace_with_tombstone(tombstone_row) is True
    assert resources.results.replace_with_tombstone(tombstone_row) is False  # a racing or retried delete: counted once


def test_provisioning_finds_its_tables_past_the_first_page_of_list_tables(moto_server):
    """ListTables answers 100 names a page: an account with more tables must not look like one without ours."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    from sightfleet.aws.dynamodb import table_names
    from sightfleet.resources import provision
    settings = Settings(endpoint_url=moto_server, prefix=unique_prefix())
    provision(settings)
    ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name=settings.region)
    spec = {"AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST"}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: ddb.create_table(TableName=f"aaa-{settings.prefix}-{i:03d}", **spec), range(101)))
    assert len(ddb.list_tables()["TableNames"]) == 100  # one page holds fewer than there are
    assert {settings.names.results_table, settings.names.accounts_table} <= table_names(ddb)
    provision(settings)  # again: finds every table, creates none
