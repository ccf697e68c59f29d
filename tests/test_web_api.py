"""The JSON API contract through the Flask test client, against a real moto endpoint."""
from __future__ import annotations

import io
import json

from sightfleet.contracts import Job
from tests.support import jpeg_bytes


def test_post_image_queues_a_job_and_result(client, resources):
    reply = client.post("/api/images?album=pets", data={"file": (io.BytesIO(jpeg_bytes()), "cat.jpg")})
    assert reply.status_code == 202
    image = reply.get_json()["images"][0]
    assert image["status"] == "QUEUED" and image["album"] == "pets" and image["filename"] == "cat.jpg"
    [message] = resources.requests.receive(10, 1)
    job = Job.from_message(message.body)
    assert job.id == image["id"] and job.is_inline and job.inline_bytes() == jpeg_bytes()
    fetched = client.get(image["status_url"]).get_json()
    assert fetched["id"] == image["id"] and fetched["status"] == "QUEUED"
    assert set(fetched) >= {"id", "status", "labels", "metadata", "error"}


def test_raw_body_upload(client):
    reply = client.post("/api/images?filename=raw.jpg", data=jpeg_bytes(), content_type="image/jpeg")
    assert reply.status_code == 202
    assert reply.get_json()["images"][0]["filename"] == "raw.jpg"


def test_large_image_travels_as_s3_pointer(client, resources):
    big = jpeg_bytes("astronaut", scale=4.0, quality=98)
    assert len(big) > 800_000
    reply = client.post("/api/images", data=big, content_type="image/jpeg")
    assert reply.status_code == 202
    [message] = resources.requests.receive(10, 1)
    job = Job.from_message(message.body)
    assert not job.is_inline and resources.inputs.get(job.key) == big


def test_unsupported_format_is_refused_with_415(client):
    reply = client.post("/api/images", data={"file": (io.BytesIO(b"GIF89a" + b"\0" * 100), "x.jpg")})
    assert reply.status_code == 415
    assert reply.get_json()["error"]["code"] == "UNSUPPORTED_FORMAT"
    assert "GIF" in reply.get_json()["error"]["message"]


def test_unknown_image_is_404_json(client):
    reply = client.get("/api/images/" + "0" * 32)
    assert reply.status_code == 404
    assert reply.get_json()["error"]["code"] == "NOT_FOUND"


def test_healthz_ok_then_503_when_a_resource_is_gone(client, settings):
    assert client.get("/healthz").status_code == 200
    import boto3
    boto3.client("sqs", endpoint_url=settings.endpoint_url, region_name=settings.region).delete_queue(
        QueueUrl=f"{settings.endpoint_url}/123456789012/{settings.names.response_queue}")
    reply = client.get("/healthz")
    assert reply.status_code == 503
    assert any("response queue" in p for p in json.loads(reply.data)["problems"])
