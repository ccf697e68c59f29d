"""Each moto patch's own effect (devstack/moto_patches.py): moto's call as the endpoint makes it, before and after.

Run from the repository root:  .venv/bin/python benchmarks/moto_patches.py [--repeat 200]
In one process: each call is timed through moto's own entry point (CPU µs per call, median of 5 blocks),
then every patch is put in place and the same calls are timed again. The inputs are the endpoint's:
a queue holding 200 job messages, the worker's conditional write, a 100 KB JSON response, a BatchGetItem
answer of 50 result rows. benchmarks/emulator.py has the effect of all of them together, through HTTP.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.core import utils as moto_utils  # noqa: E402
from moto.core.utils import get_service_model  # noqa: E402
from moto.core.responses import BaseResponse  # noqa: E402
from moto.core.serialize import XFormedAttributePicker, get_serializer_class  # noqa: E402
from moto.dynamodb.comparisons import ConditionExpressionParser  # noqa: E402
from moto.moto_api._internal import mock_random  # noqa: E402
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app  # noqa: E402
from moto.sqs.models import SQSBackend, sqs_backends  # noqa: E402
from moto.sqs.responses import SQSResponse  # noqa: E402

from devstack.moto_patches import apply_patches  # noqa: E402

BACKLOG = 200
CONDITION = ("attribute_not_exists(#id) OR #status IN (:queued, :processing)", {"#id": "id", "#status": "status"},
             {":queued": {"S": "QUEUED"}, ":processing": {"S": "PROCESSING"}})
ROW = {"id": {"S": "0" * 32}, "kind": {"S": "result"}, "album": {"S": "bench"}, "status": {"S": "SUCCEEDED"},
       "doc": {"S": json.dumps({"labels": [{"Name": "cat", "Confidence": 97.5}] * 5})}}


def calls() -> dict:
    """Each patched place, as one call the endpoint makes through it."""
    backend = SQSBackend("us-east-1", DEFAULT_ACCOUNT_ID)
    backend.create_queue("jobs")
    for number in range(BACKLOG):
        backend.send_message("jobs", json.dumps({"id": f"{number:032x}", "key": f"uploads/{number}.jpg"}))
    queued = backend.get_queue("jobs")._messages
    message = next(iter(queued))
    backend.create_queue("sent")
    dispatcher = DomainDispatcherApplication(create_backend_app)
    batch_get = get_service_model("dynamodb").operation_model("BatchGetItem")
    json_body = json.dumps({"Items": [ROW] * 60})   # about 100 KB
    return {
        "backend for a host": lambda: dispatcher.get_backend_for_host("sqs.us-east-1.amazonaws.com"),
        "account backend lookup": lambda: sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"],
        f"retention check, {BACKLOG} queued": lambda: backend.is_message_valid_based_on_retention_period(
            "jobs", message),
        f"2 queue attributes, {BACKLOG} queued": lambda: backend.get_queue_attributes(
            "jobs", ["ApproximateNumberOfMessages", "VisibilityTimeout"]),
        # Each sent message taken off again, so that the backlog stays at BACKLOG.
        f"send, {BACKLOG} queued": lambda: backend.send_message("jobs", "x") and queued.pop(),
        "response of 100 KB JSON": lambda: BaseResponse._enrich_response({"status": 200}, json_body),
        "snake_case of a name": lambda: moto_utils.camelcase_to_underscores("ApproximateNumberOfMessages"),
        "method names of SQSResponse": lambda: moto_utils.method_names_from_class(SQSResponse),
        "request id (random string 20)": lambda: mock_random.get_random_string(20),
        "random hex 32": lambda: mock_random.get_random_hex(32),
        "worker's write condition": lambda: ConditionExpressionParser(*CONDITION).parse(),
        "BatchGetItem answer, 50 rows": lambda: get_serializer_class("dynamodb", "json")(
            operation_model=batch_get, value_picker=XFormedAttributePicker()).serialize(
            {"Responses": {"results": [ROW] * 50}}),
    }


def cpu_us(call, repeat: int) -> float:
    """Median CPU µs per call over 5 blocks of repeat calls."""
    blocks = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(repeat):
            call()
        blocks.append((time.process_time() - started) * 1e6 / repeat)
    return statistics.median(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="calls per block")
    args = parser.parse_args()
    before = {name: cpu_us(call, args.repeat) for name, call in calls().items()}
    assert apply_patches(True), "the installed moto is not a tested version"
    after = {name: cpu_us(call, args.repeat) for name, call in calls().items()}
    print(f"CPU µs per call, median of 5 blocks of {args.repeat}; ratio = patched / moto")
    print(f"{'call':38} {'moto':>10} {'patched':>10} {'ratio':>7}")
    for name in before:
        print(f"{name:38} {before[name]:10.1f} {after[name]:10.1f} {after[name] / before[name]:7.3f}")


if __name__ == "__main__":
    main()
