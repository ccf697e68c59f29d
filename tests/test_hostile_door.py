"""The door half of the hostile-input corpus: every case with the answer it must get.

Each case goes through the Flask test client of an app backed by the real moto endpoint (a few
also through real HTTP). A refusal is a 4xx in the project's JSON error shape with its code, and
leaves nothing behind (no message, row or stored original); an accepted hostile file name is
stored, sent to the worker and shown only in its safe form. The worker half (poison messages,
hostile pixels and EXIF) lives with the worker's tests.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import struct
import threading
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote

import boto3
import pytest
import requests
from markupsafe import escape
from werkzeug.serving import make_server

from sightfleet.config import Settings
from sightfleet.contracts import Job, label_answer, new_image_id
from sightfleet.resources import Resources, provision
from tests.support import TESTDATA, jpeg_bytes, key_sending_client_class, keyed_client, unique_prefix
from tests.test_web_helpers import QueueFinisher
from web_tier import create_app
from web_tier.accounts import Accounts

JPEG = jpeg_bytes(scale=0.2)
SAMPLES = TESTDATA / "exif-samples"
SMALL_LIMIT_MB = 0.05  # 52,428 bytes: room for JPEG above, and oversize bodies stay cheap
SMALL_LIMIT = int(SMALL_LIMIT_MB * 2**20)


# --- building hostile requests -------------------------------------------------------------------------

def multipart(*parts: tuple[bytes, bytes]) -> tuple[bytes, str]:
    """A multipart body, byte for byte: (Content-Disposition parameters, data) per part."""
    boundary = b"corpus-7d1f"
    body = b"".join(b"--" + boundary + b"\r\nContent-Disposition: form-data; " + disposition
                    + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
                    for disposition, data in parts)
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


def file_part(filename: bytes, data: bytes = JPEG, param: bytes = b"filename") -> tuple[bytes, bytes]:
    """A `file` part whose filename parameter is exactly these bytes (quoted unless it is filename*)."""
    value = filename if param.endswith(b"*") else b'"' + filename + b'"'
    return b'name="file"; ' + param + b"=" + value, data


def cursor_of(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def png(width: int, height: int) -> bytes:
    """A PNG whose header claims this size (no pixel data: only the header matters at the door)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


class EndlessBody(io.RawIOBase):
    """A request body that never ends, counting what the server reads; it claims `declared` bytes."""

    def __init__(self, declared: int = 10**9):
        self.read_bytes, self._declared, self._pos = 0, declared, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = b"\xff\xd8\xff" + bytes(len(buffer) - 3) if self.read_bytes == 0 else bytes(len(buffer))
        self.read_bytes += len(buffer)
        return len(buffer)

    # The test client measures a stream by seeking to its end: this one says `declared`.
    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._declared if whence == 2 else offset
        return self._pos


# --- the corpus ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One hostile request and the answer it must get (code None: accepted, 202)."""

    id: str
    status: int
    code: str | None
    path: str = "/api/images"
    method: str = "POST"
    parts: tuple = ()
    raw: bytes | None = None
    content_type: str | None = None
    headers: dict = field(default_factory=dict)
    message_has: str = ""

    def send(self, client):
        kwargs: dict = {"headers": self.headers}
        if self.parts:
            kwargs["data"], kwargs["content_type"] = multipart(*self.parts)
        elif self.raw is not None:
            kwargs["data"], kwargs["content_type"] = self.raw, self.content_type
        return client.open(self.path, method=self.method, **kwargs)


def refused(id: str, status: int, code: str, **request) -> Case:
    return Case(id, status, code, **request)


def query(id: str, path: str, code: str, method: str = "GET") -> Case:
    """A query parameter trick: 400 with the parameter's code, whatever else the request holds."""
    parts = (file_part(b"cat.jpg"),) if method == "POST" else ()
    return Case(id, 400, code, path=path, method=method, parts=parts)


DEEP = "[" * 50_000 + "]" * 50_000
VALID_KEY = {"id": "a" * 32, "submitted_at": "2026-01-01T00:00:00.000Z", "kind": "image"}

REFUSALS = [
    # Query parameters: non-numbers, NaN, infinity, negatives, huge, exponents, other digits.
    *[query(f"wait={value[:12]}", f"/api/images?wait={quote(value)}", "BAD_WAIT", "POST")
      for value in ("soon", "nan", "NaN", "inf", "-inf", "-1", "1e3", "61", "9" * 400, "0x10", "\u0663")],
    *[query(f"limit={value[:12]}", f"/api/images?limit={quote(value)}", "BAD_LIMIT")
      for value in ("many", "nan", "inf", "-5", "0", "101", "9" * 5000, "1.5", "1e2", "\u0665")],
    *[query(f"status={value}", f"/api/images?status={quote(value)}", "BAD_STATUS")
      for value in ("DONE", "<script>", "queued;drop")],
    *[query(f"album={value[:12]!r}", f"/api/images?album={quote(value)}", "BAD_ALBUM")
      for value in ("x" * 65, "<script>", "\x00", "a/b", "\u202eevil")],
    query("upload-album-nul", "/api/images?album=%00", "BAD_ALBUM", "POST"),
    query("gallery-limit-nan", "/gallery?limit=nan", "BAD_LIMIT"),
    query("gallery-album-script", "/gallery?album=%3Cscript%3E", "BAD_ALBUM"),
    *[query(f"window={value[:12]}", f"/api/ops/timeseries?window={quote(value)}", "BAD_WINDOW")
      for value in ("9" * 400, "nan", "inf", "-5m", "1e3", "\u0663\u0660\u0660", "0", "25h")],
    # Cursors: not base64, the wrong kind of JSON, wrong value types, wrong keys, nested, huge.
    *[query(f"cursor-{name}", f"/api/images?cursor={cursor}", "BAD_CURSOR") for name, cursor in (
        ("not-base64", "%%%"), ("not-json", "bm90IGpzb24"), ("list", cursor_of([1, 2])), ("number", cursor_of(5)),
        ("string", cursor_of("x")), ("null", cursor_of(None)), ("id-a-number", cursor_of({**VALID_KEY, "id": 5})),
        ("kind-a-dict", cursor_of({**VALID_KEY, "kind": {"a": 1}})),
        ("bad-id", cursor_of({**VALID_KEY, "id": "../x"})),
        ("bad-time", cursor_of({**VALID_KEY, "submitted_at": "yesterday"})), ("wrong-keys", cursor_of({"a": "b"})),
        ("extra-key", cursor_of({**VALID_KEY, "album": "x"})), ("nested", cursor_of({**VALID_KEY, "id": [[["a"]]]})),
        ("deep", base64.urlsafe_b64encode(DEEP.encode()).decode()), ("huge", "A" * 5000),
        ("huge-value", cursor_of({**VALID_KEY, "submitted_at": "2026" + "0" * 3000})),
    )],
    # Parts: too many files, too many parts, a text field far too long, none at all.
    refused("eleven-files", 413, "TOO_MANY_FILES", parts=tuple(file_part(f"{i}.jpg".encode()) for i in range(11))),
    refused("thirty-parts", 413, "TOO_MANY_PARTS", parts=tuple((f'name="f{i}"'.encode(), b"x") for i in range(30))),
    refused("text-field-600k", 413, "TOO_MANY_PARTS", parts=((b'name="album"', b"a" * 600_000), file_part(b"a.jpg"))),
    refused("cse546-thirty-parts", 413, "TOO_MANY_PARTS", path="/",
            parts=tuple((f'name="myfile"; filename="{i}.jpg"'.encode(), JPEG) for i in range(30))),
    refused("file-part-without-filename", 400, "NO_FILE", parts=((b'name="file"', JPEG),)),
    refused("part-header-not-utf8", 400, "NO_FILE", parts=(file_part(b"\xff\xfe.jpg"),)),
    refused("no-body-no-type", 400, "NO_FILE", raw=b""),
    # Bodies: empty, magic bytes then garbage, impossible or enormous sizes, other formats.
    refused("empty-raw", 400, "EMPTY_FILE", raw=b"", content_type="image/jpeg"),
    refused("empty-part", 400, "EMPTY_FILE", parts=(file_part(b"empty.jpg", b""),)),
    refused("jpeg-magic-only", 400, "CORRUPT_IMAGE", raw=b"\xff\xd8\xff", content_type="image/jpeg"),
    refused("jpeg-magic-garbage", 400, "CORRUPT_IMAGE",
            parts=(file_part(b"x.jpg", b"\xff\xd8\xff" + bytes(range(256)) * 8),)),
    refused("jpeg-app0-garbage", 400, "CORRUPT_IMAGE", raw=b"\xff\xd8\xff\xe0\xff\xff" + b"\x00" * 3000,
            content_type="image/jpeg"),
    refused("png-magic-garbage", 400, "CORRUPT_IMAGE", raw=b"\x89PNG\r\n\x1a\n" + b"\x13" * 500,
            content_type="image/png"),
    refused("png-zero-width", 400, "CORRUPT_IMAGE", raw=png(0, 5), content_type="image/png"),
    refused("png-80-megapixels", 413, "IMAGE_TOO_LARGE", raw=png(10_000, 8_000), content_type="image/png",
            message_has="10000x8000"),
    refused("png-bomb-10-gigapixels", 413, "IMAGE_TOO_LARGE", parts=(file_part(b"bomb.png", png(100_000, 100_000)),)),
    refused("tiff-part", 415, "UNSUPPORTED_FORMAT", message_has="TIFF",
            parts=(file_part(b"photo.jpg", (SAMPLES / "tiff/Arbitro.tiff").read_bytes()),)),
    refused("heic-raw", 415, "UNSUPPORTED_FORMAT", raw=(SAMPLES / "heic/samplefilehub.heif").read_bytes(),
            content_type="image/jpeg", message_has="HEIF"),
    refused("gif-as-image-gif", 415, "UNSUPPORTED_FORMAT", raw=b"GIF89a" + bytes(100), content_type="image/gif",
            message_has="GIF"),
    refused("text-named-jpg", 415, "UNSUPPORTED_FORMAT", parts=(file_part(b"note.jpg", b"hello, not a photo\n"),),
            message_has="plain text"),
    refused("cse546-magic-garbage", 400, "CORRUPT_IMAGE", path="/",
            parts=((b'name="myfile"; filename="x.jpg"', b"\xff\xd8\xff" + bytes(range(256)) * 4),)),
    # Content types that are neither a form nor an image.
    refused("text-plain-body", 415, "UNSUPPORTED_MEDIA_TYPE", raw=JPEG, content_type="text/plain"),
    refused("json-body", 415, "UNSUPPORTED_MEDIA_TYPE", raw=b'{"file": "x"}', content_type="application/json"),
    refused("urlencoded-body", 415, "UNSUPPORTED_MEDIA_TYPE", raw=JPEG,
            content_type="application/x-www-form-urlencoded"),
    refused("octet-stream-body", 415, "UNSUPPORTED_MEDIA_TYPE", raw=JPEG, content_type="application/octet-stream"),
    refused("untyped-body", 415, "UNSUPPORTED_MEDIA_TYPE", raw=JPEG),
    refused("delete-images", 405, "METHOD_NOT_ALLOWED", method="DELETE"),
]


@pytest.fixture(scope="module")
def door(moto_server):
    """An app on its own provisioned stack (the `app` fixture's recipe), shared by the refusals.

    Refusals write nothing, so sharing one stack is sound: each case compares what is stored before and after.
    """
    settings = Settings(endpoint_url=moto_server, prefix=unique_prefix("door"))
    provision(settings)
    resources = Resources.connect(settings)
    app = create_app(settings, resources)
    app.config.update(TESTING=True)
    return keyed_client(app, resources, "door", admin=True), resources  # an admin: the ops routes have doors too


def assert_error_shape(reply, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.data[:300]
    assert reply.is_json, reply.data[:300]  # never werkzeug's HTML
    body = reply.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body["error"]


def written(resources) -> tuple[int, int, int]:
    """Messages, result rows and stored originals of a stack, to compare before and after a request."""
    settings = resources.settings
    s3 = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    return (sum(resources.requests.counts().values()), len(resources.results.page(limit=100)[0]),
            s3.list_objects_v2(Bucket=resources.inputs.name).get("KeyCount", 0))


@pytest.mark.parametrize("case", REFUSALS, ids=[c.id for c in REFUSALS])
def test_refused_with_a_code_and_nothing_left_behind(door, case):
    client, resources = door
    before = written(resources)
    error = assert_error_shape(case.send(client), case.status, case.code)
    assert case.message_has in error["message"]
    assert written(resources) == before


def test_the_corpus_is_big_enough():
    assert len(REFUSALS) + len(NAMES) >= 40


# --- hostile names: what is stored, sent to the worker and shown ------------------------------------

@dataclass(frozen=True)
class Name:
    """A hostile file name as sent, and the name stored, queued and shown."""

    id: str
    parts: tuple = ()
    raw_query: str | None = None  # a raw body's ?filename=, already URL-encoded
    stored: str = ""


NAMES = [
    Name("script-tag", (file_part(b"<script>alert(1)</script>.jpg"),), stored="script>.jpg"),
    Name("img-onerror", (file_part(b"<img src=x onerror=alert(1)>.jpg"),), stored="<img src=x onerror=alert(1)>.jpg"),
    Name("attribute-break", (file_part(b'x\\" onmouseover=\\"alert(1).jpg'),), stored='x" onmouseover="alert(1).jpg'),
    Name("traversal", (file_part(b"../../etc/passwd"),), stored="passwd"),
    Name("windows-path", (file_part(b"C:\\\\Users\\\\me\\\\cat.jpg"),), stored="cat.jpg"),
    Name("dot-dot", (file_part(b".."),), stored="upload"),
    Name("absolute", (file_part(b"/etc/shadow"),), stored="shadow"),
    Name("control-characters", (file_part(b"a\x00b\x1b[31mc\x07\x7f.jpg"),), stored="ab[31mc.jpg"),
    Name("right-to-left-override", (file_part("\u202egpj.exe".encode()),), stored="gpj.exe"),
    Name("direction-marks", (file_part("\u200fcat\u202a.jpg\u2066".encode()),), stored="cat.jpg"),
    Name("zero-width", (file_part("ca\u200bt.jpg".encode()),), stored="cat.jpg"),
    Name("empty", (file_part(b""),), stored="upload"),
    Name("spaces-only", (file_part(b"   "),), stored="upload"),
    Name("rfc5987-override", (file_part(b"UTF-8''%E2%80%AEgpj.exe", param=b"filename*"),), stored="gpj.exe"),
    Name("rfc5987-traversal", (file_part(b"UTF-8''..%2F..%2Fcat.jpg", param=b"filename*"),), stored="cat.jpg"),
    Name("rfc5987-line-break", (file_part(b"UTF-8''evil%0D%0AX-Injected%3A%201.jpg", param=b"filename*"),),
         stored="evilX-Injected: 1.jpg"),
    Name("rfc5987-beside-plain", ((b'name="file"; filename="plain.jpg"; filename*=UTF-8\'\'caf%C3%A9%20%E6%9D%B1.jpg',
                                   JPEG),), stored="café 東.jpg"),
    Name("very-long", (file_part(b"a" * 5000 + b".jpg"),), stored="a" * 196 + ".jpg"),
    Name("unicode-kept", (file_part("café 東京.jpg".encode()),), stored="café 東京.jpg"),
    Name("raw-override", raw_query=quote("\u202egpj.exe"), stored="gpj.exe"),
    Name("raw-traversal", raw_query=quote("../../x.jpg", safe=""), stored="x.jpg"),
    Name("raw-control", raw_query="a%00b%0Ac%0D.jpg", stored="abc.jpg"),
    Name("raw-missing", raw_query="", stored="upload"),
]


def send_name(client, name: Name):
    if name.raw_query is not None:
        return client.post(f"/api/images?filename={name.raw_query}", data=JPEG, content_type="image/jpeg")
    data, content_type = multipart(*name.parts)
    return client.post("/api/images", data=data, content_type=content_type)


@pytest.mark.parametrize("name", NAMES, ids=[n.id for n in NAMES])
def test_hostile_names_are_stored_queued_and_shown_safely(client, resources, name):
    reply = send_name(client, name)
    assert reply.status_code == 202, reply.data
    [image] = reply.get_json()["images"]
    assert image["filename"] == name.stored
    assert client.get(image["status_url"]).get_json()["filename"] == name.stored
    [message] = resources.requests.receive(10, 1)
    assert Job.from_message(message.body).filename == name.stored  # what the worker sees
    for path in (image["page_url"], "/gallery"):
        page = client.get(path, headers={"Accept": "text/html"}).get_data(as_text=True)
        assert str(escape(name.stored)) in page
        for raw in ("<script>alert", "<img src=x", 'x" onmouseover', "\u202e", "\x00", "\x1b"):
            assert raw not in page


def test_the_cse546_text_answer_carries_only_the_safe_name(client, resources):
    QueueFinisher(resources, 3, top="cat").start()
    for sent, stored in ((b"<img src=x onerror=alert(1)>.jpg", "<img src=x onerror=alert(1)>.jpg"),
                         ("\u202egpj.exe".encode(), "gpj.exe"), (b"../../etc/test_07.JPEG", "test_07.JPEG")):
        data, content_type = multipart((b'name="myfile"; filename="' + sent + b'"', JPEG))
        reply = client.post("/", data=data, content_type=content_type)
        assert reply.status_code == 200 and reply.mimetype == "text/plain"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"  # never sniffed as HTML
        assert reply.get_data(as_text=True) == label_answer(stored, "cat")


# --- what passes the door and what the limits let through ------------------------------------------

def test_a_jpeg_cut_after_its_header_is_accepted_and_left_to_the_worker(client):
    # Only the header is read at the door; the worker fails the rest clearly (CORRUPT_IMAGE).
    cut = jpeg_bytes()[:9000]
    reply = client.post("/api/images", data=cut, content_type="image/jpeg")
    assert reply.status_code == 202 and reply.get_json()["images"][0]["size"] == 9000


def test_the_sniffed_format_wins_over_the_declared_type(client):
    reply = client.post("/api/images", data=JPEG, content_type="image/png")
    assert reply.status_code == 202 and reply.get_json()["images"][0]["content_type"] == "image/jpeg"


def test_pages_ignore_an_album_that_cannot_be_one(client):
    page = client.get("/?album=%3Cscript%3Ealert(1)%3C%2Fscript%3E", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "<script>alert" not in page.get_data(as_text=True)
    assert '<option value="default" selected>' in page.get_data(as_text=True)


def test_the_ops_page_falls_back_from_a_huge_window(admin_client):
    assert admin_client.get("/ops?window=" + "9" * 400, headers={"Accept": "text/html"}).status_code == 200


def test_an_error_page_for_browsers_is_escaped_html(client):
    reply = client.get("/gallery?album=%3Cscript%3Ealert(1)%3C/script%3E", headers={"Accept": "text/html"})
    assert reply.status_code == 400 and reply.mimetype == "text/html"
    assert "<script>alert" not in reply.get_data(as_text=True) and "BAD_ALBUM" in reply.get_data(as_text=True)


# --- raw bodies: the per-image limit holds before (and while) the body is read ------------------------

@pytest.fixture(scope="module")
def small_limit(moto_server):
    """An app whose per-image limit is SMALL_LIMIT bytes, on its own stack."""
    settings = Settings(endpoint_url=moto_server, prefix=unique_prefix("limit"), max_upload_mb=SMALL_LIMIT_MB)
    provision(settings)
    resources = Resources.connect(settings)
    app = create_app(settings, resources)
    # Its test clients, and the HTTP tests' requests (HTTP_KEY), act for a signed-in account.
    app.test_client_class = key_sending_client_class(Accounts(resources.accounts).create("tester")[1].key)
    return app, resources


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read(small_limit):
    app, resources = small_limit
    before = written(resources)
    for query in ("", "?album=holiday"):  # an album in the query or not: the same limit
        # Over the per-image limit, within the whole request's bound (ten images): only the former holds it.
        body = EndlessBody(declared=2 * SMALL_LIMIT)
        reply = app.test_client().post(f"/api/images{query}", input_stream=body, content_type="image/jpeg")
        assert_error_shape(reply, 413, "TOO_LARGE")
        assert body.read_bytes == 0
    assert written(resources) == before


def test_an_endless_chunked_body_is_cut_at_the_limit(small_limit):
    app, resources = small_limit
    before, body = written(resources), EndlessBody()
    reply = app.test_client().post("/api/images", input_stream=body, content_type="image/jpeg",
                                   headers={"Transfer-Encoding": "chunked"},
                                   environ_overrides={"wsgi.input_terminated": True})
    assert_error_shape(reply, 413, "TOO_LARGE")
    assert SMALL_LIMIT <= body.read_bytes <= SMALL_LIMIT + 128 * 1024  # read up to the limit, no further
    assert written(resources) == before


def test_a_chunked_body_of_exactly_the_limit_is_accepted(small_limit):
    app, resources = small_limit
    exact = JPEG + bytes(SMALL_LIMIT - len(JPEG))  # bytes after the end of a JPEG are ignored by readers
    reply = app.test_client().post("/api/images", input_stream=io.BytesIO(exact), content_type="image/jpeg",
                                   headers={"Transfer-Encoding": "chunked"},
                                   environ_overrides={"wsgi.input_terminated": True})
    assert reply.status_code == 202, reply.data
    over = app.test_client().post("/api/images", data=exact + b"\0", content_type="image/jpeg")
    assert_error_shape(over, 413, "TOO_LARGE")


# --- a few through real HTTP -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def http_url(small_limit):
    """The small-limit app served over real HTTP by werkzeug's threaded server (chunked bodies too)."""
    app, _ = small_limit
    server = make_server("127.0.0.1", 0, _with_key(app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def _with_key(app):
    """The app as served to the HTTP tests: every request arrives with the small-limit app's test key."""
    key = app.test_client_class.api_key

    def serve(environ, start_response):
        environ.setdefault("HTTP_AUTHORIZATION", f"Bearer {key}")
        return app(environ, start_response)
    return serve


def http_exchange(url: str, head: bytes) -> tuple[int, dict]:
    """Send a request head (and whatever body bytes it carries), then read the answer; no more is sent."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head)
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        return reply.status, json.loads(reply.read())


def test_http_declared_oversize_answers_413_without_the_body_being_sent(http_url):
    status, body = http_exchange(http_url, b"POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                                           b"Content-Length: 1000000000\r\n\r\n")
    assert status == 413 and body["error"]["code"] == "TOO_LARGE"


def test_http_chunked_oversize_answers_413_at_the_limit(http_url):
    chunk = JPEG + bytes(SMALL_LIMIT + 1 - len(JPEG))  # one byte past what the raw reader takes
    head = (b"POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")  # no last chunk: the body never ends
    status, body = http_exchange(http_url, head)
    assert status == 413 and body["error"]["code"] == "TOO_LARGE"


def test_http_hostile_name_and_query(http_url, small_limit):
    _, resources = small_limit
    data, content_type = multipart(file_part("<b>\u202eevil</b>.jpg".encode()))
    reply = requests.post(http_url + "/api/images", data=data, headers={"Content-Type": content_type}, timeout=20)
    assert reply.status_code == 202 and reply.json()["images"][0]["filename"] == "b>.jpg"
    nan = requests.get(http_url + "/api/images?limit=nan", timeout=20)
    assert nan.status_code == 400 and nan.json()["error"]["code"] == "BAD_LIMIT"
    cursor = requests.get(http_url + "/api/images?cursor=" + cursor_of({**VALID_KEY, "id": new_image_id(), "x": "y"}),
                          timeout=20)
    assert cursor.status_code == 400 and cursor.json()["error"]["code"] == "BAD_CURSOR"
