"""The JSON API contract through the Flask test client, against a real moto endpoint."""
from __future__ import annotations

import io
import json
import re
import time

import boto3
import pytest
from itsdangerous import URLSafeSerializer

from sightfleet.aws.dynamodb import ResultsTable
from sightfleet.aws.sqs import Queue
from sightfleet.contracts import Job
from sightfleet.errors import Invalid
from sightfleet.resources import Resources
from tests.support import TESTDATA, jpeg_bytes, keyed_client
from tests.test_web_helpers import QueueFinisher, finish
from web_tier.present import FOREIGN_CURSOR
from web_tier.services import services_of


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


def test_healthz_ok_then_503_when_a_resource_is_gone(admin_client, settings):
    client = admin_client  # only admins read which resource is gone
    assert client.get("/healthz").status_code == 200
    import boto3
    boto3.client("sqs", endpoint_url=settings.endpoint_url, region_name=settings.region).delete_queue(
        QueueUrl=f"{settings.endpoint_url}/123456789012/{settings.names.response_queue}")
    services_of(client.application).health.forget()   # a verdict is reused for 1.5 s
    reply = client.get("/healthz")
    assert reply.status_code == 503
    assert any("response queue" in p for p in json.loads(reply.data)["problems"])


# --- submitting: many files, raw bodies, refusals -------------------------------------------------

TESTDATA_FORMATS = TESTDATA / "exif-samples"


def table_items(resources) -> list[dict]:
    """Every result in the stack's table (each test has its own prefix, so its own table)."""
    return resources.results.page(limit=100)[0]


def bucket_keys(settings, bucket: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_many_files_in_one_request_are_each_queued(client, resources):
    files = [(io.BytesIO(jpeg_bytes(name, scale=0.5)), f"{name}.jpg") for name in ("chelsea", "coffee", "astronaut")]
    reply = client.post("/api/images?album=mix", data={"file": files})
    assert reply.status_code == 202
    images = reply.get_json()["images"]
    assert [i["filename"] for i in images] == ["chelsea.jpg", "coffee.jpg", "astronaut.jpg"]
    assert all(i["status_url"] == f"/api/images/{i['id']}" for i in images)
    jobs = [Job.from_message(m.body) for m in resources.requests.receive(10, 1)]
    assert sorted(j.id for j in jobs) == sorted(i["id"] for i in images)


def test_png_raw_body_with_album_and_filename(client):
    from PIL import Image
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes("coffee", scale=0.3))).save(out, "PNG")
    reply = client.post("/api/images?album=cups&filename=cup.png", data=out.getvalue(), content_type="image/png")
    assert reply.status_code == 202
    image = reply.get_json()["images"][0]
    assert (image["filename"], image["album"], image["content_type"]) == ("cup.png", "cups", "image/png")


def test_one_bad_file_refuses_the_request_and_queues_nothing(client, resources):
    files = [(io.BytesIO(jpeg_bytes()), "good.jpg"), (io.BytesIO((TESTDATA_FORMATS / "tiff/Arbitro.tiff").read_bytes()), "x.tiff")]
    reply = client.post("/api/images", data={"file": files})
    assert reply.status_code == 415
    assert "TIFF" in reply.get_json()["error"]["message"]
    assert resources.requests.counts()["visible"] == 0 and table_items(resources) == []


@pytest.mark.parametrize("path, code", [("tiff/Arbitro.tiff", "UNSUPPORTED_FORMAT"),
                                        ("heic/samplefilehub.heif", "UNSUPPORTED_FORMAT")])
def test_real_files_in_other_formats_get_415(client, path, code):
    data = (TESTDATA_FORMATS / path).read_bytes()
    reply = client.post("/api/images", data={"file": (io.BytesIO(data), "photo.jpg")})
    assert reply.status_code == 415 and reply.get_json()["error"]["code"] == code
    raw = client.post("/api/images", data=data, content_type="image/jpeg")
    assert raw.status_code == 415


@pytest.mark.parametrize("query, data, code", [
    ("", {}, "NO_FILE"),
    ("", {"file": (io.BytesIO(b""), "empty.jpg")}, "EMPTY_FILE"),
    ("?album=%3Cscript%3E", None, "BAD_ALBUM"),
    ("?wait=soon", None, "BAD_WAIT"),
])
def test_bad_submissions_get_400_with_a_code(client, resources, query, data, code):
    data = {"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg")} if data is None else data
    reply = client.post("/api/images" + query, data=data, content_type="multipart/form-data")
    assert reply.status_code == 400
    assert reply.get_json()["error"]["code"] == code and reply.get_json()["error"]["message"]
    assert table_items(resources) == []


def test_size_limit_is_configurable_and_gives_413(settings_factory):
    from web_tier import create_app
    settings = settings_factory(max_upload_mb=0.02)
    resources = Resources.connect(settings)
    client = keyed_client(create_app(settings, resources), resources)
    big = jpeg_bytes()  # about 35 KB, over a 0.02 MB (20 KB) limit
    assert len(big) > settings.max_upload_bytes
    multipart = client.post("/api/images", data={"file": (io.BytesIO(big), "cat.jpg")})
    assert multipart.status_code == 413
    assert multipart.get_json()["error"] == {"code": "TOO_LARGE", "message": multipart.get_json()["error"]["message"]}
    assert "limit is 0.02 MB" in multipart.get_json()["error"]["message"]
    raw = client.post("/api/images", data=big, content_type="image/jpeg")
    assert raw.status_code == 413 and raw.get_json()["error"]["code"] == "TOO_LARGE"
    # Over the whole request's bound (ten images of the limit plus an envelope): refused while reading.
    huge = client.post("/api/images", data={"file": [(io.BytesIO(big), f"{i}.jpg") for i in range(40)]})
    assert huge.status_code == 413 and huge.get_json()["error"]["code"] == "TOO_LARGE"
    assert "request is larger" in huge.get_json()["error"]["message"]
    small = client.post("/api/images", data={"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg")})
    assert small.status_code == 202


def test_404s_are_json(client):
    for path in ("/api/images/" + "f" * 32, "/api/images/not-an-id", "/api/images/..%2F..%2Fetc%2Fpasswd", "/api/nothing"):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert reply.is_json and reply.get_json()["error"]["code"] == "NOT_FOUND", path


# --- 503: the queue or storage out of reach, and nothing half-written left behind --------------------

def delete_queue(settings, name: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=settings.endpoint_url, region_name=settings.region)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])


def assert_503(reply) -> None:
    assert reply.status_code == 503, reply.data
    assert reply.headers["Retry-After"].isdigit() and int(reply.headers["Retry-After"]) > 0
    assert reply.get_json()["error"]["code"] == "UNAVAILABLE"


def test_queue_gone_before_first_use_gives_503_and_no_result_row(client, resources, settings):
    delete_queue(settings, settings.names.request_queue)
    assert_503(client.post("/api/images", data={"file": (io.BytesIO(jpeg_bytes()), "cat.jpg")}))
    assert table_items(resources) == []


def test_queue_gone_after_the_image_was_stored_removes_row_and_object(client, resources, settings):
    assert client.post("/api/images", data=jpeg_bytes(scale=0.3), content_type="image/jpeg").status_code == 202
    before = {i["id"] for i in table_items(resources)}
    delete_queue(settings, settings.names.request_queue)  # the queue URL is cached: the send itself fails
    big = jpeg_bytes("astronaut", scale=4.0, quality=98)  # travels as an S3 pointer: stored first
    assert_503(client.post("/api/images", data=big, content_type="image/jpeg"))
    assert {i["id"] for i in table_items(resources)} == before
    assert bucket_keys(settings, settings.names.input_bucket) == []


def test_results_table_gone_after_the_send_still_accepts_the_job(client, resources, settings):
    # The job is sent before its row is written: a row that cannot be written loses nothing.
    boto3.client("dynamodb", endpoint_url=settings.endpoint_url, region_name=settings.region).delete_table(
        TableName=settings.names.results_table)
    big = jpeg_bytes("astronaut", scale=4.0, quality=98)
    reply = client.post("/api/images", data={"file": (io.BytesIO(big), "big.jpg")})
    assert reply.status_code == 202, reply.data
    [image] = reply.get_json()["images"]
    [message] = resources.requests.receive(10, 1)
    job = Job.from_message(message.body)
    assert job.id == image["id"] and resources.inputs.get(job.key) == big  # the worker finds its original
    assert_503(client.get("/api/images?album=x"))
    assert_503(client.get("/api/images/" + "a" * 32))  # a missing table is out of reach, not a missing image


def test_dead_endpoint_gives_503(settings):
    from tests.support import free_port
    from web_tier import create_app
    dead = settings.with_changes(endpoint_url=f"http://127.0.0.1:{free_port()}")
    anonymous = create_app(dead, Resources.connect(dead)).test_client()
    client = create_app(dead, Resources.connect(dead)).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer sfk_any"  # who it is cannot be checked either
    assert_503(client.post("/api/images", data={"file": (io.BytesIO(jpeg_bytes()), "cat.jpg")}))
    assert_503(client.get("/api/images"))
    assert_503(anonymous.post("/", data={"myfile": (io.BytesIO(jpeg_bytes()), "cat.jpg")}))


class QueueLostAfterFirstSend(Queue):
    """The real request queue, deleted for real right after the first message is sent."""

    def __init__(self, settings):
        super().__init__(settings, settings.names.request_queue)
        self._settings = settings

    def send(self, body: str) -> str:
        message_id = super().send(body)
        delete_queue(self._settings, self.name)
        return message_id


def test_queue_lost_mid_request_says_which_images_were_accepted(settings):
    from web_tier import create_app
    resources = Resources.connect(settings)
    resources.requests = QueueLostAfterFirstSend(settings)
    client = keyed_client(create_app(settings, resources), resources)
    files = [(io.BytesIO(jpeg_bytes(n, scale=0.3)), f"{n}.jpg") for n in ("chelsea", "coffee", "rocket")]
    reply = client.post("/api/images", data={"file": files})
    assert_503(reply)
    [accepted] = reply.get_json()["images"]
    assert accepted["filename"] == "chelsea.jpg" and "1 of 3" in reply.get_json()["error"]["message"]
    assert [i["id"] for i in table_items(resources)] == [accepted["id"]]


# --- reading: one result, listing with filters and cursors, waiting ---------------------------------

def submit_many(client, count: int, album: str) -> list[str]:
    data = jpeg_bytes(scale=0.2)
    ids = []
    for i in range(count):
        reply = client.post(f"/api/images?album={album}&filename=p{i:02d}.jpg", data=data, content_type="image/jpeg")
        ids.append(reply.get_json()["images"][0]["id"])
    return ids


def walk(client, query: str) -> list[list[dict]]:
    pages, cursor = [], None
    while True:
        reply = client.get(f"/api/images?{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert reply.status_code == 200, reply.data
        pages.append(reply.get_json()["images"])
        cursor = reply.get_json()["next_cursor"]
        if not cursor:
            return pages


def test_listing_pages_newest_first_without_gaps_or_repeats(client):
    ids = submit_many(client, 12, "trip")
    submit_many(client, 2, "other")
    pages = walk(client, "album=trip&limit=5")
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [i["id"] for p in pages for i in p] == ids[::-1]
    assert len(walk(client, "limit=100")[0]) == 14


def test_status_filter_fills_pages(client, resources):
    ids = submit_many(client, 9, "mixed")
    for image_id in ids[::3]:  # three of nine succeed, spread over the listing
        finish(resources, image_id)
    pages = walk(client, "album=mixed&status=succeeded&limit=2")
    assert [len(p) for p in pages] == [2, 1]
    assert {i["id"] for p in pages for i in p} == set(ids[::3])
    assert all(i["status"] == "SUCCEEDED" for p in pages for i in p)
    queued = walk(client, "album=mixed&status=QUEUED&limit=6")
    assert [len(p) for p in queued] == [6]


@pytest.mark.parametrize("query, code", [("status=DONE", "BAD_STATUS"), ("limit=many", "BAD_LIMIT"),
                                         ("cursor=%%%", "BAD_CURSOR"), ("cursor=bm90IGpzb24", "BAD_CURSOR")])
def test_bad_listing_queries_get_400(client, query, code):
    reply = client.get("/api/images?" + query)
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == code


def test_a_changed_or_foreign_cursor_is_refused_with_a_clear_message(client):
    submit_many(client, 2, "c")
    cursor = client.get("/api/images?album=c&limit=1").get_json()["next_cursor"]
    key = URLSafeSerializer(client.application.secret_key, salt="sightfleet-listing-cursor").loads(cursor)
    foreign = URLSafeSerializer("another service's key", salt="sightfleet-listing-cursor").dumps(key)
    changed = URLSafeSerializer("x", salt="sightfleet-listing-cursor").dumps({**key, "id": "0" * 32})
    tampered = changed.rpartition(".")[0] + "." + cursor.rpartition(".")[2]   # the original's signature
    for bad in (foreign, tampered, cursor[:-2]):
        reply = client.get(f"/api/images?album=c&limit=1&cursor={bad}")
        assert reply.status_code == 400 and reply.get_json()["error"] == {"code": "BAD_CURSOR",
                                                                         "message": FOREIGN_CURSOR}
    assert client.get(f"/api/images?album=c&limit=1&cursor={cursor}").status_code == 200


def test_a_cursor_only_continues_its_own_listing(client):
    submit_many(client, 3, "a")
    cursor = client.get("/api/images?album=a&limit=1").get_json()["next_cursor"]
    assert client.get(f"/api/images?album=a&limit=1&cursor={cursor}").status_code == 200
    reply = client.get(f"/api/images?album=b&cursor={cursor}")
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "BAD_CURSOR"
    assert client.get(f"/api/images?cursor={cursor}").status_code == 400


def test_wait_answers_200_with_results_when_they_are_ready(client, resources):
    finisher = QueueFinisher(resources, 2, top="cat")
    finisher.start()
    files = [(io.BytesIO(jpeg_bytes(scale=0.3)), "one.jpg"), (io.BytesIO(jpeg_bytes(scale=0.3)), "bad-two.jpg")]
    reply = client.post("/api/images?wait=20", data={"file": files})
    assert reply.status_code == 200, reply.data
    images = reply.get_json()["images"]
    assert [(i["filename"], i["status"]) for i in images] == [("one.jpg", "SUCCEEDED"), ("bad-two.jpg", "FAILED")]
    assert images[0]["top_label"] == "cat" and images[0]["labels"][0]["Confidence"] == 91.25
    assert images[1]["error"]["code"] == "CORRUPT_IMAGE"


def test_wait_that_runs_out_answers_202(client):
    started = time.monotonic()
    reply = client.post("/api/images?wait=1", data=jpeg_bytes(scale=0.3), content_type="image/jpeg")
    assert reply.status_code == 202 and reply.get_json()["images"][0]["status"] == "QUEUED"
    assert 0.9 < time.monotonic() - started < 10


# --- CSRF: programs send no cookie; the upload page must prove itself -------------------------------

def test_a_signed_in_browser_needs_the_csrf_header_a_program_with_a_key_does_not(app, resources, client):
    from web_tier.accounts import Accounts
    Accounts(resources.accounts).create("browsing", password="a long enough password")
    browser = app.test_client()
    token = re.search(rb'name="csrf_token" value="([^"]+)"', browser.get("/signin").data).group(1).decode()
    assert browser.post("/signin", data={"name": "browsing", "password": "a long enough password",
                                         "csrf_token": token}).status_code == 302
    upload = {"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg")}
    refused = browser.post("/api/images", data=dict(upload))
    assert refused.status_code == 400 and "reload the page" in refused.get_json()["error"]["message"]
    stale = browser.post("/api/images", data={"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg")},
                         headers={"X-CSRF-Token": token})
    assert stale.status_code == 400   # a token is bound to the session: the one from before sign-in is spent
    token = re.search(rb'name="csrf_token" value="([^"]+)"', browser.get("/").data).group(1).decode()
    upload = {"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg")}
    assert browser.post("/api/images", data=upload, headers={"X-CSRF-Token": token}).status_code == 202
    client.get("/")   # a program holding our CSRF cookie, with its key: no other site can send that header
    assert client.get_cookie("sightfleet_csrf") is not None
    assert client.post("/api/images", data=jpeg_bytes(scale=0.3), content_type="image/jpeg").status_code == 202


class RefusesListings(ResultsTable):
    """The real results table, whose listings the backend refuses as invalid (a ValidationException)."""

    def page(self, *args, **kwargs):
        raise Invalid("list results: ValidationException: the provided starting key is invalid")


def test_a_request_the_backend_refuses_as_invalid_is_a_400_not_a_retry(settings):
    from web_tier import create_app
    resources = Resources.connect(settings)
    resources.results = RefusesListings(settings)
    reply = keyed_client(create_app(settings, resources), resources).get("/api/images")
    assert reply.status_code == 400 and "Retry-After" not in reply.headers
    assert reply.get_json()["error"]["code"] == "INVALID_REQUEST"


def test_an_upload_just_under_the_inline_limit_with_a_long_non_ascii_name_still_fits_the_queue(resources):
    """The job's envelope is measured: escaped non-ASCII names and albums do not push a message over the limit."""
    import io as _io

    from PIL import Image
    from web_tier.submit import Submitter, Upload
    buffer = _io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    limit = resources.requests.max_message_bytes()
    data = buffer.getvalue() + b"\0" * ((limit - 2048) * 3 // 4 - len(buffer.getvalue()))  # the old guess's edge
    accepted = Submitter(resources, 10 << 20).submit(Upload(data, "\U0001F600" * 196 + ".png", "é" * 64))
    [message] = resources.requests.receive(1, 1)
    assert len(message.body.encode()) <= limit and accepted["id"] in message.body
    assert '"key"' in message.body   # too big to travel inline once the envelope is counted: a pointer job
