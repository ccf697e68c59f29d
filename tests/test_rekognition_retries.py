"""Rekognition's retryable errors, with the real boto3 client against the app on a port: a fleet too slow and the
rate limit both raise ThrottlingException, and a retried call joins the job already sent instead of sending another."""
from __future__ import annotations

import threading

import boto3
import pytest
from botocore.config import Config
from werkzeug.serving import make_server

from sightfleet.secretbox import SecretBox
from tests.support import free_port, jpeg_bytes
from tests.test_web_helpers import QueueFinisher
from web_tier.services import services_of

KEY = "a credentials key of 32 characters or more"
PHOTO = jpeg_bytes()


@pytest.fixture
def served(settings_factory):
    from web_tier import create_app
    settings = settings_factory(rekognition_wait_s=1.0, rate_limit="5/minute", credentials_key=KEY)
    app = create_app(settings)
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def client_for(app, url: str):
    accounts = services_of(app).accounts
    account, _ = accounts.create("retry")
    pair = accounts.issue_access_key(account)
    assert accounts._box is not None and isinstance(accounts._box, SecretBox)  # noqa: SLF001
    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1", aws_access_key_id=pair.key_id,
                        aws_secret_access_key=pair.secret, config=Config(retries={"max_attempts": 1}))


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
