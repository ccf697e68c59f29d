"""The local AWS endpoint as scripts/run starts it: moto's application behind gunicorn with keep-alive."""
from __future__ import annotations

import http.client
import threading
import json
import time
from urllib.parse import urlparse

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from devstack.stack import moto_command
from sightfleet.config import Settings
from sightfleet.resources import Resources, provision
from tests.support import sigv4_headers, start_moto, unique_prefix

pytestmark = pytest.mark.slow  # emulator servers started and stopped


@pytest.fixture(scope="module", params=["on", "off"], ids=["patched", "plain-moto"])
def moto_server(request):
    """This module's endpoint, served once with moto's replacements in place and once as plain moto: the tests
    that go through it must pass both ways (the other tests compare each replacement with moto's own)."""
    proc, url = start_moto(lambda port: [*moto_command(port), "--moto-patches", request.param])
    yield url
    proc.terminate()
    proc.wait(10)


def _list_queues(connection: http.client.HTTPConnection) -> http.client.HTTPResponse:
    url = f"http://{connection.host}:{connection.port}/"
    connection.request("POST", "/", body="{}", headers=sigv4_headers(url, "POST", b"{}", "sqs", {
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ListQueues"}))
    response = connection.getresponse()
    response.read()
    return response


def test_connections_are_kept_alive(moto_server):
    address = urlparse(moto_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    first = _list_queues(connection)
    sock = connection.sock
    second = _list_queues(connection)
    assert first.status == second.status == 200
    assert (first.getheader("Connection") or "").lower() != "close"
    assert connection.sock is sock  # the second request went over the same TCP connection
    connection.close()


@pytest.mark.parametrize("host", [None, "moto_api", "127.0.0.1:4566", "s3.amazonaws.com",
                                  "bucket.s3.amazonaws.com", "sqs.us-east-1.amazonaws.com",
                                  "dynamodb.us-east-1.amazonaws.com", "ec2.us-east-1.amazonaws.com"])
def test_remembered_backends_are_the_ones_moto_finds(host):
    from devstack.moto_repairs import _backend_for_host_remembered
    remembering, plain = DomainDispatcherApplication(create_backend_app), DomainDispatcherApplication(create_backend_app)
    assert _backend_for_host_remembered(remembering, host) == plain.get_backend_for_host(host)
    assert _backend_for_host_remembered(remembering, host) == plain.get_backend_for_host(host)  # from memory now


def test_every_service_answers_through_one_endpoint(resources):
    resources.outputs.put("k/one.txt", b"hello", "text/plain")
    assert resources.outputs.get("k/one.txt") == b"hello"
    resources.requests.send("ping")
    assert [m.body for m in resources.requests.receive(1, 1)] == ["ping"]
    resources.fleet_log.put("worker", "i-1", {"state": "idle"})
    assert [d["state"] for d in resources.fleet_log.all("worker")] == ["idle"]
    assert resources.fleet.instances() == []


def test_stops_promptly_with_a_long_poll_open():
    proc, url = start_moto()
    try:
        settings = Settings(endpoint_url=url, prefix=unique_prefix())
        provision(settings)
        queue = Resources.connect(settings).requests
        polling = threading.Thread(target=lambda: _quietly(queue.receive, 1, 20), daemon=True)
        polling.start()
        time.sleep(1)
        started = time.monotonic()
        proc.terminate()
        proc.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()


def _quietly(call, *args):
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - the server going away mid-poll is the point of the test
        pass


def test_the_retention_check_agrees_with_motos_own():
    """The repaired check reads one attribute, and decides as moto's does for fresh and expired messages."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    from devstack.moto_repairs import _retention_check

    backend = SQSBackend("us-east-1", "123456789012")
    backend.create_queue("retained", MessageRetentionPeriod="60")
    fresh = backend.send_message("retained", "fresh")
    expired = backend.send_message("retained", "expired")
    expired.sent_timestamp = int((unix_time() - 61) * 1000)
    for message, kept in ((fresh, True), (expired, False)):
        assert _retention_check(backend, "retained", message) is kept
        assert backend.is_message_valid_based_on_retention_period("retained", message) is kept


@pytest.mark.parametrize("names", [["ApproximateNumberOfMessages", "VisibilityTimeout"], ["All"], [],
                                   ["RedrivePolicy"], ["NoSuchAttribute"]])
def test_queue_attributes_are_motos_own(names):
    """The same attributes as moto's own read, or the same refusal of a name SQS does not have."""
    from moto.sqs.exceptions import InvalidAttributeName
    from moto.sqs.models import SQSBackend

    from devstack.moto_repairs import _queue_attributes

    backend = SQSBackend("us-east-1", "123456789012")
    backend.create_queue("counted")
    for number in range(3):
        backend.send_message("counted", f"job {number}")
    if names == ["NoSuchAttribute"]:
        for read in (_queue_attributes, SQSBackend.get_queue_attributes):
            with pytest.raises(InvalidAttributeName):
                read(backend, "counted", names)
    else:
        assert _queue_attributes(backend, "counted", names) == backend.get_queue_attributes("counted", names)


def test_a_deep_backlog_is_received_ten_at_a_time(resources):
    """Receives from a queue holding many messages (moto's own check scanned them all per message)."""
    requests = resources.requests
    for number in range(60):
        requests.send(f"job {number}")
    received = []
    while batch := requests.receive(10, 0):
        received += [message.body for message in batch]
    assert sorted(received) == sorted(f"job {number}" for number in range(60))


@pytest.mark.parametrize("body", ['<R><RequestId>x</RequestId><A>1</A></R>', '{"Messages": [{"Body": "<b>"}]}',
                                  b"\xff\xd8\xff photo bytes", ""])
def test_responses_are_enriched_as_moto_does(body):
    """Same headers and body as moto's own enrichment, whether or not the body holds an XML request id."""
    from moto.core.responses import BaseResponse

    from devstack.moto_repairs import _enriched
    theirs_headers, theirs_body = BaseResponse._enrich_response({"status": 200}, body)
    ours_headers, ours_body = _enriched({"status": 200}, body)
    assert set(ours_headers) == set(theirs_headers) and ours_headers["status"] == "200"
    if isinstance(body, str) and "<RequestId>" in body:
        assert ours_body == body.replace(">x<", f">{ours_headers['x-amzn-requestid']}<")
        assert theirs_body == body.replace(">x<", f">{theirs_headers['x-amzn-requestid']}<")
    else:
        assert ours_body == theirs_body == body


def test_a_frozen_endpoint_is_not_replaced_by_gunicorn_when_it_thaws():
    """Frozen for 30 s (SIGSTOP of the group), the worker holding moto's state must outlast gunicorn's timeout."""
    from devstack.emulator import server_options
    assert server_options("127.0.0.1", 1)["timeout"] > 60


def test_counts_are_right_outside_sends_and_fifo_deduplication_still_reads_its_attribute(moto_server):
    """Sends skip counting the queue; GetQueueAttributes still counts visible, in-flight and delayed messages."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"{unique_prefix('counts')}-q")["QueueUrl"]
    for number in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"job {number}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=60)
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"],
            counts["ApproximateNumberOfMessagesDelayed"]) == ("3", "2", "1")

    fifo = sqs.create_queue(QueueName=f"{unique_prefix('dedup')}.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    for _ in range(3):   # the same body thrice: content-based deduplication keeps one
        sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
    assert sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "1"


@pytest.mark.parametrize("expression, names, values", [
    ("attribute_not_exists(#s) OR #s IN (:q, :p)", {"#s": "status"}, {":q": {"S": "QUEUED"}, ":p": {"S": "PROCESSING"}}),
    ("#s <> :d", {"#s": "status"}, {":d": {"S": "DELETED"}}),
    ("size(labels) > :n AND begins_with(album, :a)", None, {":n": {"N": "2"}, ":a": {"S": "Bro"}}),
])
def test_a_remembered_condition_is_the_tree_moto_parses(expression, names, values):
    """Parsed once, then remembered: the same tree, and the names and values found, as copies of their own."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    from devstack.moto_repairs import _MOTO_PARSE, _parsed_once

    theirs = ConditionExpressionParser(expression, names, values)
    expected = repr(_MOTO_PARSE(theirs))
    for _ in range(2):   # the second time from what was remembered
        ours = ConditionExpressionParser(expression, names, values)
        assert repr(_parsed_once(ours)) == expected
        assert (ours.expr_attr_names_found, ours.expr_attr_values_found) == (
            theirs.expr_attr_names_found, theirs.expr_attr_values_found)
        ours.expr_attr_names_found.append("#changed by the caller")   # moto extends these lists in place


def test_an_invalid_condition_is_refused_every_time():
    from moto.dynamodb.comparisons import ConditionExpressionParser

    from devstack.moto_repairs import _parsed_once

    for _ in range(2):   # nothing was remembered of the first refusal
        with pytest.raises(ValueError, match="Bad comparison"):
            _parsed_once(ConditionExpressionParser("#s = = :v", {"#s": "status"}, {":v": {"S": "x"}}))


def test_remembered_helpers_answer_as_motos_own():
    from moto.core.utils import camelcase_to_underscores, method_names_from_class
    from moto.moto_api._internal import mock_random
    from moto.sqs.responses import SQSResponse

    from devstack.moto_repairs import (_MOTO_METHOD_NAMES, _camelcase_to_underscores, _method_names, _random_hex,
                                       _random_string)

    assert list(_method_names(SQSResponse)) == _MOTO_METHOD_NAMES(SQSResponse)
    for name in ("ApproximateNumberOfMessages", "MessageRetentionPeriod", "ListQueues", "X"):
        assert _camelcase_to_underscores(name) == camelcase_to_underscores(name)
    assert camelcase_to_underscores("ApproximateNumberOfMessages") == "approximate_number_of_messages"
    assert method_names_from_class(SQSResponse)   # whichever of the two this process has
    drawn = _random_string(mock_random, 52)
    assert len(drawn) == 52 and drawn.isalnum()
    assert _random_string(mock_random, 20, include_digits=False, lower_case=True).isalpha()
    hexes = _random_hex(mock_random, 400)
    assert len(hexes) == 400 and set(hexes) == set("0123456789abcdef") == set(mock_random.get_random_hex(400))


def test_every_kind_of_attribute_value_reads_back_as_written(moto_server):
    """Item responses go through the remembered member names: every DynamoDB type, nested, reads back the same."""
    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    table = f"{unique_prefix('kinds')}-t"
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    item = {"id": {"S": "a"}, "n": {"N": "1.5"}, "b": {"B": b"\x00\xff"}, "ok": {"BOOL": False}, "none": {"NULL": True},
            "ss": {"SS": ["x", "y"]}, "ns": {"NS": ["1", "2"]}, "bs": {"BS": [b"\x01"]},
            "labels": {"L": [{"M": {"name": {"S": "dog"}, "score": {"N": "0.9"}, "box": {"L": [{"N": "1"}]}}}]},
            "exif": {"M": {"Make": {"S": "Nikon"}, "GPS": {"M": {"lat": {"N": "48.1"}}}}}}
    ddb.put_item(TableName=table, Item=item)
    ddb.put_item(TableName=table, Item={**item, "id": {"S": "b"}})

    def same(found):
        return {k: (sorted(v[next(iter(v))]) if next(iter(v)) in ("SS", "NS", "BS") else v) for k, v in found.items()}
    for _ in range(2):   # the second time from the remembered names
        assert same(ddb.get_item(TableName=table, Key={"id": {"S": "a"}})["Item"]) == same(item)
        batch = ddb.batch_get_item(RequestItems={table: {"Keys": [{"id": {"S": "a"}}, {"id": {"S": "b"}}]}})
        assert sorted(found["id"]["S"] for found in batch["Responses"][table]) == ["a", "b"]
        assert all(same({**found, "id": item["id"]}) == same(item) for found in batch["Responses"][table])


def test_an_account_backend_is_made_and_registered_again_after_a_reset():
    """The shortcut skips only lookups of an account that exists; a reset empties both, and the next lookup
    makes and registers it again, as moto's own does."""
    from moto.core.base_backend import BackendDict
    from moto.sqs.models import sqs_backends

    from devstack.moto_repairs import _account_backend_once

    _account_backend_once(sqs_backends, "210987654321")
    assert "210987654321" in sqs_backends.keys() and sqs_backends in BackendDict._instances
    BackendDict.reset()
    assert "210987654321" not in sqs_backends.keys() and sqs_backends not in BackendDict._instances
    _account_backend_once(sqs_backends, "210987654321")
    assert "210987654321" in sqs_backends.keys() and sqs_backends in BackendDict._instances


def test_a_remembered_condition_keeps_its_own_values_when_a_set_it_was_written_from_grows(moto_server):
    """moto keeps a request's set value in the item it writes; a later ADD grows that very list. The
    remembered condition must still compare with the value it was parsed from (moto's own answer)."""
    import boto3
    from botocore.exceptions import ClientError

    ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    table = f"{unique_prefix('alias')}-t"
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    ddb.put_item(TableName=table, Item={"id": {"S": "c"}, "tags": {"SS": ["x"]}})
    set_x = {"UpdateExpression": "SET tags = :ss", "ConditionExpression": "attribute_not_exists(tags) OR tags <> :ss",
             "ExpressionAttributeValues": {":ss": {"SS": ["x"]}}}
    ddb.update_item(TableName=table, Key={"id": {"S": "a"}}, **set_x)
    ddb.update_item(TableName=table, Key={"id": {"S": "a"}}, UpdateExpression="ADD tags :more",
                    ExpressionAttributeValues={":more": {"SS": ["y"]}})
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):   # c's tags are {x}: the condition is false
        ddb.update_item(TableName=table, Key={"id": {"S": "c"}}, **set_x)


def test_concurrent_adds_to_one_item_lose_no_update(moto_server):
    """moto's update is read-change-write; the endpoint applies item writes one at a time, as DynamoDB does."""
    import boto3
    from concurrent.futures import ThreadPoolExecutor

    ddb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    table = f"{unique_prefix('adds')}-t"
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")

    def add(_):
        return int(ddb.update_item(TableName=table, Key={"id": {"S": "n"}}, UpdateExpression="ADD hits :one",
                                   ExpressionAttributeValues={":one": {"N": "1"}},
                                   ReturnValues="UPDATED_NEW")["Attributes"]["hits"]["N"])
    with ThreadPoolExecutor(16) as pool:
        counts = list(pool.map(add, range(400)))
    assert sorted(counts) == list(range(1, 401))


def test_a_stack_resource_is_described_beside_one_moto_cannot_model():
    """moto's DescribeStackResource fails on a stack with a resource it does not model (None in its map, as a
    CloudWatch alarm is); the repair answers as CloudFormation does."""
    import boto3
    from moto import mock_aws
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.models import cloudformation_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    from devstack.moto_repairs import _stack_resource_described
    template = {"Resources": {
        "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "MetricName": "x", "Namespace": "y", "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1,
            "Threshold": 1, "ComparisonOperator": "GreaterThanThreshold"}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "kept"}}}}
    with mock_aws():
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="conditional", TemplateBody=json.dumps(template))
        backend = cloudformation_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        with pytest.raises(AttributeError):
            backend.describe_stack_resource("conditional", "Queue")   # moto's own, on such a stack
        _, queue = _stack_resource_described(backend, "conditional", "Queue")
        assert queue.logical_resource_id == "Queue"
        with pytest.raises(ValidationError, match="does not exist"):
            _stack_resource_described(backend, "conditional", "Missing")
