"""The security headers are on every kind of answer: pages, JSON, text, Prometheus, static, every error."""
from __future__ import annotations

import io
import threading
import time

import pytest

from sightfleet.resources import Resources
from tests.browser import chromium, requires_chromium, screenshot
from tests.support import free_port, jpeg_bytes, keyed_client, open_sign_in_link, sign_in_url, wait_for
from web_tier.accounts import Accounts
from tests.test_web_helpers import QueueFinisher, finish
from web_tier import create_app, security

HTML = {"Accept": "text/html"}
# (method, path, request options, status expected): one of each kind of answer the app gives.
ROUTES = [
    ("GET", "/", {}, 200),                                     # a page
    ("GET", "/gallery", {}, 200),
    ("GET", "/ops", {}, 200),                                  # the ops blueprint's page
    ("GET", "/api/images", {}, 200),                           # JSON
    ("GET", "/api/ops/summary", {}, 200),
    ("GET", "/healthz", {}, 200),
    ("GET", "/metrics", {}, 200),                              # Prometheus text
    ("GET", "/static/style.css", {}, 200),                     # a static file
    ("GET", "/api/images/nope", {}, 404),                      # JSON error from a view
    ("GET", "/no-such-page", {"headers": HTML}, 404),          # an error page
    ("GET", "/no-such-api", {}, 404),                          # an error as JSON
    ("PUT", "/api/images", {}, 405),
    ("POST", "/", {"data": {"file": (b"", "x.jpg")}}, 400),    # the course endpoint's error
    ("POST", "/api/images", {"data": b"x" * 64, "content_type": "text/csv"}, 415),
]


def assert_locked_down(reply, secure: bool = False) -> None:
    headers = reply.headers
    policy = headers.get("Content-Security-Policy", "")
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"):
        assert directive in policy, (reply.request.path, policy)
    assert headers.get("Referrer-Policy") == security.REFERRER_POLICY
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("X-Frame-Options") == "DENY"
    assert ("Strict-Transport-Security" in headers) == secure, reply.request.path


@pytest.mark.parametrize("method,path,options,status", ROUTES, ids=[f"{r[0]} {r[1]} {r[3]}" for r in ROUTES])
def test_every_kind_of_answer_carries_the_headers(admin_client, method, path, options, status):
    client = admin_client
    options = dict(options)
    if isinstance(options.get("data"), dict):
        options["data"] = {k: (io.BytesIO(v[0]), v[1]) for k, v in options["data"].items()}
    reply = client.open(path, method=method, **options)
    assert reply.status_code == status, reply.get_data(as_text=True)[:300]
    assert_locked_down(reply)


def test_course_answer_in_text_carries_the_headers(anonymous_client, resources):
    client = anonymous_client
    QueueFinisher(resources, 1, top="cat").start()
    reply = client.post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.3)), "test_01.jpg")})
    assert reply.status_code == 200 and reply.mimetype == "text/plain"
    assert_locked_down(reply)


def test_too_large_answers_carry_the_headers(settings_factory):
    settings = settings_factory(max_upload_mb=0.02)
    resources = Resources.connect(settings)
    client = keyed_client(create_app(settings, resources), resources)
    big = jpeg_bytes()  # about 35 KB, over a 0.02 MB limit
    raw = client.post("/api/images", data=big, content_type="image/jpeg")  # refused by the view's check
    huge = client.post("/api/images", data={"file": [(io.BytesIO(big), f"{i}.jpg") for i in range(40)]})
    assert raw.status_code == huge.status_code == 413  # the second by werkzeug while reading the body
    assert_locked_down(raw)
    assert_locked_down(huge)


def test_unhandled_error_500_carries_the_headers(app, resources):
    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    for headers in ({}, HTML):
        reply = keyed_client(app, resources, f"u{len(headers)}").get("/boom", headers=headers)
        assert reply.status_code == 500
        assert_locked_down(reply)


def test_hsts_only_over_https(client):
    assert_locked_down(client.get("/api/images", base_url="https://sightfleet.example"), secure=True)
    assert_locked_down(client.get("/api/images", base_url="http://sightfleet.example"), secure=False)


def test_images_may_come_from_storage_but_scripts_only_from_here(client, resources):
    storage = resources.outputs.presigned_url("probe", 60).split("/probe")[0]
    policy = client.get("/no-such-page", headers=HTML).headers["Content-Security-Policy"]
    img_src = next(d for d in policy.split("; ") if d.startswith("img-src"))
    script_src = next(d for d in policy.split("; ") if d.startswith("script-src"))
    assert storage.split("/")[2] in img_src and script_src == "script-src 'self'"


@requires_chromium
def test_no_page_meets_a_policy_refusal_in_chromium(app, resources, admin_client):
    """The policy must not break the pages: plotly's charts, Swagger UI, live scripts, storage images."""
    from werkzeug.serving import make_server
    photo = jpeg_bytes(scale=0.3)
    accepted = admin_client.post("/api/images", data=photo, content_type="image/jpeg").get_json()
    result = finish(resources, accepted["images"][0]["id"], data=photo)  # with a thumbnail in storage
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    refused = {}
    try:
        with chromium() as driver:
            open_sign_in_link(driver, sign_in_url(url, Accounts(resources.accounts), "admin", "/"))
            for page in ("/", "/gallery", f"/images/{result['id']}", "/ops", "/api/docs", "/no-such-page"):
                driver.get(url + page)
                time.sleep(2)  # the pages' scripts draw and poll
                refused[page] = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
            screenshot(driver, "policy-error-page")
            driver.get(url + "/ops")
            wait_for(lambda: driver.find_elements("css selector", ".modebar-btn"), 30, what="the charts")
            # Plotly's own stylesheet applied: its toolbar buttons are transparent, not the page's blue buttons.
            background = driver.execute_script(
                "return getComputedStyle(document.querySelector('.modebar-btn')).backgroundColor")
            screenshot(driver, "policy-ops")
    finally:
        server.shutdown()
    assert refused == {page: [] for page in refused}
    assert background in ("rgba(0, 0, 0, 0)", "transparent"), background
