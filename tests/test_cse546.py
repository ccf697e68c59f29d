"""The CSE546-compatible endpoint through the Flask test client (a queue finisher plays the worker)."""
from __future__ import annotations

import io

import pytest

from tests.support import TESTDATA, jpeg_bytes
from tests.test_web_helpers import QueueFinisher
from web_tier import course_endpoint


@pytest.mark.parametrize("field", ["myfile", "inputFile"])
def test_answers_name_colon_label_as_text(client, resources, field):
    QueueFinisher(resources, 1, top="cat").start()
    reply = client.post("/", data={field: (io.BytesIO(jpeg_bytes(scale=0.3)), "test_07.JPEG")})
    assert reply.status_code == 200
    assert reply.mimetype == "text/plain" and reply.get_data(as_text=True) == "test_07:cat"


def test_missing_field_is_400_json(client):
    reply = client.post("/", data={"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "x.jpg")})
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "NO_FILE"
    assert "myfile" in reply.get_json()["error"]["message"]


def test_unsupported_file_is_415_before_anything_is_queued(client, resources):
    data = (TESTDATA / "exif-samples/tiff/Arbitro.tiff").read_bytes()
    reply = client.post("/", data={"myfile": (io.BytesIO(data), "Arbitro.tiff")})
    assert reply.status_code == 415 and reply.get_json()["error"]["code"] == "UNSUPPORTED_FORMAT"
    assert resources.requests.counts()["visible"] == 0


def test_failed_recognition_is_422_with_the_reason(client, resources):
    QueueFinisher(resources, 1).start()
    reply = client.post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.3)), "bad.jpg")})
    assert reply.status_code == 422
    assert reply.get_json()["error"] == {"code": "CORRUPT_IMAGE", "message": "the image data is damaged"}


def test_no_result_in_time_is_504_with_where_to_look(client, monkeypatch):
    monkeypatch.setattr(course_endpoint, "WAIT_S", 1)
    reply = client.post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.3)), "slow.jpg")})
    assert reply.status_code == 504
    assert reply.get_json()["error"]["code"] == "TIMEOUT" and "/api/images/" in reply.get_json()["error"]["message"]
