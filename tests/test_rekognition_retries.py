"""Rekognition's retryable errors, with the real boto3 client against the app on a port: a fleet too slow and the
rate limit both raise ThrottlingException, and a retried call joins the job already sent instead of sending another."""
from __future__ import annotations

import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from werkzeug.serving import make_server

from sightfleet.contracts import FAILED, Job, queued_result
from sightfleet.secretbox import SecretBox
from tests.support import free_port, jpeg_bytes
from tests.test_web_helpers import QueueFinisher, finish_result
from web_tier.services import services_of

KEY = "a credentials key of 32 characters or more"
PHOTO = jpeg_bytes()
ONE_TRY = {"total_max_attempts": 1, "mode": "standard"}   # one request per call: the rate limit counts requests


@pytest.fixture
def served(settings_factory):
    from web_tier import create_app
    settings = settings_factory(rekognition_wait_s=1.0, rate_limit="5/minute", credentials_key=KEY)
    app = create_app(settings)
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def client_for(app, url: str, retries: dict | None = None):
    accounts = services_of(app).accounts
    account, _ = accounts.create("retry")
    pair = accounts.issue_access_key(account)
    assert accounts._box is not None and isinstance(accounts._box, SecretBox)  # noqa: SLF001
    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1", aws_access_key_id=pair.key_id,
                        aws_secret_access_key=pair.secret, config=Config(retries=retries or {"max_attempts": 1}))


def test_a_slow_fleet_is_a_throttling_error_and_the_retry_joins_the_same_job(served):
    app, url = served
    client, resources = client_for(app, url), services_of(app).resources
    for _ in range(2):
        with pytest.raises(client.exceptions.ThrottlingException) as caught:
            client.detect_labels(Image={"Bytes": PHOTO})
        assert "retry" in caught.value.response["Error"]["Message"]
    assert resources.requests.counts()["visible"] == 1   # two calls, one job
    finisher = QueueFinisher(resources, 1)
    finisher.start()
    finisher.join(timeout=30)
    answer = client.detect_labels(Image={"Bytes": PHOTO})
    assert answer["Labels"][0]["Name"] == "cat" and resources.requests.counts()["visible"] == 0


def test_the_rate_limit_is_a_throttling_error_that_botocore_retries(served):
    app, url = served
    client = client_for(app, url)
    errors = []
    for _ in range(7):
        try:
            client.detect_labels(Image={"Bytes": b"not an image at all"})
        except client.exceptions.InvalidImageFormatException:
            errors.append("format")
        except client.exceptions.ThrottlingException as exc:
            errors.append("throttled")
            assert "rate limit" in exc.response["Error"]["Message"]
    assert errors[:5] == ["format"] * 5 and errors[5:] == ["throttled"] * 2


def queued_jobs(resources, count: int) -> list[Job]:
    """count jobs taken off the request queue (a receive may bring fewer than are there)."""
    jobs: list[Job] = []
    for _ in range(10):
        for message in resources.requests.receive(10, 1):
            jobs.append(Job.from_message(message.body))
            resources.requests.delete(message.receipt)
        if len(jobs) >= count:
            break
    assert len(jobs) == count and resources.requests.counts()["visible"] == 0
    return jobs


def test_each_operation_sends_a_job_naming_only_the_features_it_needs(served):
    app, url = served
    client, resources = client_for(app, url, ONE_TRY), services_of(app).resources
    calls = {"labels": lambda: client.detect_labels(Image={"Bytes": PHOTO}),
             "text": lambda: client.detect_text(Image={"Bytes": PHOTO}),
             "faces": lambda: client.detect_faces(Image={"Bytes": PHOTO}, Attributes=["ALL"]),
             "properties": lambda: client.detect_labels(Image={"Bytes": PHOTO}, Features=["IMAGE_PROPERTIES"])}
    for call in calls.values():   # no worker: each call's job waits on the queue, and the caller is throttled
        with pytest.raises(client.exceptions.ThrottlingException, match="did not answer"):
            call()
    features = sorted(job.features for job in queued_jobs(resources, len(calls)))
    # The stack moderates every photo (SIGHTFLEET_MODERATION=flag by default), whatever the call.
    assert features == sorted((name, "moderation") for name in calls), features


def test_a_worker_without_the_features_model_answers_unsupported_operation_not_retried(served):
    app, url = served
    client, resources = client_for(app, url, ONE_TRY), services_of(app).resources
    with pytest.raises(client.exceptions.ThrottlingException):
        client.detect_text(Image={"Bytes": PHOTO})
    [job] = queued_jobs(resources, 1)
    unavailable = {"code": "FEATURE_UNAVAILABLE", "message": "text: this worker has no text model installed"}
    finish_result(resources, queued_result(job), FAILED, "cat", error=unavailable)
    with pytest.raises(ClientError) as caught:
        client.detect_text(Image={"Bytes": PHOTO})   # the retry joins the job, which has ended
    error = caught.value.response["Error"]
    assert error["Code"] == "UnsupportedOperationException" and "no text model" in error["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
