"""Rate limits and image quotas, counted in the limits table on the local endpoint and shared by app instances."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devstack.stack import answers
from sightfleet.aws.dynamodb import TTL_ATTRIBUTE
from sightfleet.aws.limits import LimitsTable, ensure_limits_table
from sightfleet.aws.session import client, resource
from sightfleet.config import Settings
from sightfleet.errors import NotFound
from sightfleet.resources import Resources
from tests.support import REPO, bearer, free_port, jpeg_bytes, wait_for
from sightfleet.quota import ANONYMOUS_IMAGES
from web_tier import create_app, reservations
from web_tier.accounts import Accounts
from web_tier.identity import ANONYMOUS_OWNER
from web_tier.services import services_of

def make_app(settings, resources=None):
    """An app on these settings (and on these resources, when given)."""
    app = create_app(settings, resources or Resources.connect(settings))
    app.config.update(TESTING=True)
    return app


def caller(settings, name: str, resources=None) -> tuple[dict, str]:
    """Headers that make a request come from a new account `name` (its API key), and its owner id."""
    account, issued = Accounts((resources or Resources.connect(settings)).accounts).create(name)
    return bearer(issued.key), account["account_id"]


def course_call(web, address: str = "127.0.0.1"):
    """A request to the course endpoint, open to anonymous callers (counted by address); 400 without a file."""
    return web.post("/", data={}, environ_base={"REMOTE_ADDR": address})


def photo(name: str = "cat.jpg"):
    return {"file": (io.BytesIO(jpeg_bytes(scale=0.2)), name)}


def drop_limits_table(settings) -> None:
    """Make the store unreachable the way a missing table is."""
    client(settings, "dynamodb").delete_table(TableName=settings.names.limits_table)


def test_two_app_instances_share_one_limit_and_answer_429_with_retry_after(settings_factory):
    settings = settings_factory(rate_limit="3/minute")
    first, second = make_app(settings).test_client(), make_app(settings).test_client()
    alice, _ = caller(settings, "alice")
    answers = [c.get("/api/images", headers=alice).status_code for c in (first, second, first)]
    refused = second.get("/api/images", headers=alice)
    assert answers == [200, 200, 200] and refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "RATE_LIMITED"
    assert 0 < int(refused.headers["Retry-After"]) <= 61
    assert "3 per 1 minute" in refused.get_json()["error"]["message"]
    assert "Content-Security-Policy" in refused.headers  # a 429 is locked down like every answer


def test_each_owner_and_each_anonymous_address_has_its_own_window(settings_factory):
    settings = settings_factory(rate_limit="2/minute")
    web = make_app(settings).test_client()
    for name in ("alice", "bob"):
        headers, _ = caller(settings, name)
        assert [web.get("/api/images", headers=headers).status_code for _ in range(3)] == [200, 200, 429]
    assert [course_call(web, "10.0.0.7").status_code for _ in range(3)] == [400, 400, 429]
    assert course_call(web, "10.0.0.8").status_code == 400


def test_health_checks_and_static_files_are_never_limited(settings_factory):
    settings = settings_factory(rate_limit="1/minute")
    web = make_app(settings).test_client()
    assert course_call(web).status_code == 400
    assert course_call(web).status_code == 429
    assert all(web.get("/healthz").status_code == 200 for _ in range(3))
    assert all(web.get("/static/style.css").status_code == 200 for _ in range(3))


def test_a_window_that_ended_starts_again(settings_factory):
    settings = settings_factory(rate_limit="2 per 3 seconds")
    web = make_app(settings).test_client()
    assert [course_call(web).status_code for _ in range(3)] == [400, 400, 429]
    retry_after = int(course_call(web).headers["Retry-After"])
    assert 1 <= retry_after <= 3
    time.sleep(retry_after + 0.2)
    assert course_call(web).status_code == 400


def test_concurrent_hits_are_counted_exactly_once_each(settings):
    table = LimitsTable(settings)
    # The window is started first, so that every hit below is one UpdateItem ADD to a running window.
    # DynamoDB applies the writes to an item one at a time, and so does the local endpoint (moto alone
    # does not: devstack/emulator.py, _ITEM_WRITES), so no hit is lost and no count is given twice.
    assert table.hit("burst", 60) == 1
    with ThreadPoolExecutor(max_workers=16) as pool:
        counts = list(pool.map(lambda _: table.hit("burst", 60), range(64)))
    assert sorted(counts) == list(range(2, 66))
    assert table.window("burst")[0] == 65
    table.clear("burst")
    assert table.window("burst")[0] == 0


def test_an_unreachable_store_fails_open_and_each_process_counts_alone(settings_factory, caplog):
    settings = settings_factory(rate_limit="3/minute")
    web = make_app(settings).test_client()
    alice, _ = caller(settings, "alice")
    assert web.get("/api/images", headers=alice).status_code == 200
    drop_limits_table(settings)
    with caplog.at_level(logging.WARNING):
        answers = [web.get("/api/images", headers=alice).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]  # served, and still bounded by this process's own count
    assert "falling back to in-memory storage" in caplog.text


def test_no_rate_limit_when_none_is_set_and_a_malformed_one_fails_at_start(settings_factory):
    settings = settings_factory(rate_limit="")
    web = make_app(settings).test_client()
    alice, _ = caller(settings, "alice")
    assert all(web.get("/api/images", headers=alice).status_code == 200 for _ in range(5))
    with pytest.raises(ValueError):
        make_app(settings_factory(rate_limit="lots"))


def test_quota_counts_accepted_images_per_owner_across_instances(settings_factory, resources):
    settings = settings_factory(quota_images=3, rate_limit="")
    first, second = make_app(settings).test_client(), make_app(settings).test_client()
    (alice, alice_id), (bob, bob_id) = caller(settings, "alice"), caller(settings, "bob")
    two = {"file": [(io.BytesIO(jpeg_bytes(scale=0.2)), f"{i}.jpg") for i in range(2)]}
    assert first.post("/api/images", data=two, headers=alice).status_code == 202
    refused = second.post("/api/images", data={"file": [(io.BytesIO(jpeg_bytes(scale=0.2)), f"{i}.jpg")
                                                        for i in range(2)]}, headers=alice)
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert int(refused.headers["Retry-After"]) > 0
    assert second.post("/api/images", data=photo(), headers=alice).status_code == 202
    assert first.post("/api/images", data=photo(), headers=alice).status_code == 429
    assert first.post("/api/images", data=photo(), headers=bob).status_code == 202
    table = LimitsTable(settings)
    assert (table.held(alice_id), table.held(bob_id)) == (3, 1)
    queue = Resources.connect(settings).requests.counts()
    assert queue["visible"] + queue["in_flight"] == 4  # nothing of the refused requests was queued


def test_refused_and_failed_uploads_give_their_reservation_back(settings_factory):
    settings = settings_factory(quota_images=1, rate_limit="")
    app = make_app(settings)
    web = app.test_client()
    dana, dana_id = caller(settings, "dana")
    tiff = {"file": (io.BytesIO(b"II*\x00" + b"\x00" * 64), "scan.tiff")}
    assert web.post("/api/images", data=tiff, headers=dana).status_code == 415
    raw = jpeg_bytes(scale=0.2)
    assert web.post("/api/images", data=raw, content_type="image/jpeg", headers=dana).status_code == 202
    assert LimitsTable(settings).held(dana_id) == 1
    assert web.post("/api/images", data=photo(), headers=dana).status_code == 429
    with app.app_context():
        reservations.release(dana_id, 1)  # what deleting an image calls
    assert LimitsTable(settings).held(dana_id) == 0
    assert web.post("/", data={"myfile": (io.BytesIO(b"not an image"), "x.jpg")}).status_code == 415
    assert LimitsTable(settings).held(ANONYMOUS_OWNER) == 0


def test_release_never_counts_below_zero(settings):
    table = LimitsTable(settings)
    assert table.reserve("carol", 2, 5)
    table.release("carol", 5)  # more than counted: images from before the quota was set
    assert table.held("carol") == 0
    assert table.reserve("carol", 5, 5) and not table.reserve("carol", 1, 5)


def test_quota_fails_closed_when_its_store_is_unreachable(settings_factory):
    settings = settings_factory(quota_images=10, rate_limit="")
    web = make_app(settings).test_client()
    alice, _ = caller(settings, "alice")
    drop_limits_table(settings)
    reply = web.post("/api/images", data=photo(), headers=alice)
    assert reply.status_code == 503 and reply.headers["Retry-After"]
    assert Resources.connect(settings).requests.counts()["visible"] == 0  # nothing accepted uncounted


def test_healthz_fails_without_the_limits_table_only_when_a_quota_needs_it(settings_factory):
    """With a quota, uploads cannot be taken without the table (503 above): /healthz says so too. Without
    one, only the rate limits use it and they fail open, so the web tier stays healthy."""
    quota, rates_only = settings_factory(quota_images=10, rate_limit=""), settings_factory(rate_limit="600/minute")
    for settings in (quota, rates_only):
        web = make_app(settings).test_client()
        assert web.get("/healthz").status_code == 200
        drop_limits_table(settings)
        services_of(web.application).health.forget()   # a verdict is reused for 1.5 s
        expected = 503 if settings is quota else 200
        assert web.get("/healthz").status_code == expected


def test_the_course_endpoint_counts_its_image_against_the_anonymous_owner(settings_factory, monkeypatch):
    from web_tier import course_endpoint
    monkeypatch.setattr(course_endpoint, "WAIT_S", 0.5)
    settings = settings_factory(quota_images=5, anonymous_quota_images=0, rate_limit="")
    web = make_app(settings).test_client()
    assert web.post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.2)), "a.jpg")}).status_code == 504
    wait_for(lambda: LimitsTable(settings).held(ANONYMOUS_OWNER) == 1, 5, what="the accepted image to stay counted")


def test_anonymous_callers_share_a_default_quota_of_images_per_expiry_period(settings_factory, monkeypatch):
    from web_tier import course_endpoint
    monkeypatch.setattr(course_endpoint, "WAIT_S", 0.5)
    settings = settings_factory(anonymous_quota_images=2, rate_limit="")   # no quota for accounts
    assert Settings().anonymous_quota_images > 0 and Settings().anonymous_expiry_days > 0
    web = make_app(settings).test_client()
    send = lambda address: web.post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.2)), "a.jpg")},  # noqa: E731
                                    environ_base={"REMOTE_ADDR": address})
    assert [send(f"10.0.0.{i}").status_code for i in range(3)] == [504, 504, 429]   # every address together
    refused = send("10.0.0.9")
    assert refused.get_json()["error"]["code"] == "QUOTA_EXCEEDED" and "2 images per 7 days" in refused.get_data(True)
    table = LimitsTable(settings)
    hits, ends_at = table.window(ANONYMOUS_IMAGES)
    assert hits == 2 and 6.9 * 86400 < ends_at - time.time() <= 7 * 86400   # refusals gave their count back
    assert table.held(ANONYMOUS_OWNER) == 0
    alice, _ = caller(settings, "alice")
    keyed = web.post("/", headers=alice, data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.2)), "a.jpg")})
    assert keyed.status_code == 504   # an account's image is not the anonymous owner's to count


@pytest.mark.slow
def test_gunicorns_worker_processes_share_one_limit(settings_factory, tmp_path):
    """The web tier as it is served: two gunicorn processes, each request on a new connection."""
    settings = settings_factory()
    port = free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": settings.endpoint_url, "SIGHTFLEET_PREFIX": settings.prefix,
           "PORT": str(port), "SIGHTFLEET_RATE_LIMIT": "6/minute", "SIGHTFLEET_WEB_WORKERS": "2",
           "SIGHTFLEET_WEB_THREADS": "4", "SIGHTFLEET_SECRET_KEY": "k" * 32, "PYTHONPATH": str(REPO)}
    with open(tmp_path / "web.log", "w") as log:
        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "web_tier/gunicorn.conf.py", "web_tier.wsgi:app"],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url + "/healthz", ok_only=True), 60, what="gunicorn")
        statuses = [requests.post(url + "/", timeout=30, headers={"Connection": "close"}).status_code
                    for _ in range(14)]
    finally:
        web.terminate()
        web.wait(timeout=30)
    assert statuses.count(400) == 6 and statuses.count(429) == 8, statuses  # 400: the course call had no file
    assert "falling back" not in (tmp_path / "web.log").read_text()


LIMITS_CALLS = {
    "hit": lambda t: t.hit("k", 60),
    "window": lambda t: t.window("k"),
    "clear": lambda t: t.clear("k"),
    "clear_all": lambda t: t.clear_all(),
    "reserve": lambda t: t.reserve("o", 1, 5),
    "release": lambda t: t.release("o", 1),
    "held": lambda t: t.held("o"),
    "check": lambda t: t.check(),
}


@pytest.mark.parametrize("call", LIMITS_CALLS.values(), ids=LIMITS_CALLS.keys())
def test_every_limits_call_on_a_missing_table_is_not_found(settings, call):
    drop_limits_table(settings)
    with pytest.raises(NotFound, match="ResourceNotFoundException"):
        call(LimitsTable(settings))


def test_provisioning_the_limits_table_is_idempotent_and_turns_its_ttl_on(settings):
    ensure_limits_table(settings)  # a second time: the fixture's provisioning made it
    ddb = client(settings, "dynamodb")
    ttl = ddb.describe_time_to_live(TableName=settings.names.limits_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == TTL_ATTRIBUTE and ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    table = LimitsTable(settings)
    table.hit("k", 60)
    item = resource(settings, "dynamodb").Table(table.name).get_item(Key={"pk": "rate#k"})["Item"]
    assert int(item[TTL_ATTRIBUTE]) > time.time()  # DynamoDB drops ended windows by themselves
    assert table.clear_all() == 1 and table.window("k")[0] == 0


def test_deleting_an_image_gives_its_owner_room_once_and_a_retried_delete_does_not(settings_factory):
    settings = settings_factory(quota_images=1, rate_limit="")
    web = make_app(settings).test_client()
    erin, erin_id = caller(settings, "erin")
    accepted = web.post("/api/images", data=photo(), headers=erin)
    assert accepted.status_code == 202
    assert web.post("/api/images", data=photo(), headers=erin).status_code == 429
    image_id = accepted.get_json()["images"][0]["id"]
    assert web.delete(f"/api/images/{image_id}", headers=erin).status_code == 204
    assert LimitsTable(settings).held(erin_id) == 0
    assert web.delete(f"/api/images/{image_id}", headers=erin).status_code in (204, 404)  # a retry
    assert web.post("/api/images", data=photo(), headers=erin).status_code == 202
    assert LimitsTable(settings).held(erin_id) == 1  # the retry gave nothing back twice


def test_a_delete_that_fails_part_way_still_gives_the_image_back_once(settings_factory):
    """The count goes down with the one write that buries the row, before the objects go."""
    from sightfleet.memory import memory_resources
    settings = settings_factory(quota_images=1, rate_limit="")
    resources, faults = memory_resources(settings)
    web = make_app(settings, resources).test_client()
    fay, fay_id = caller(settings, "fay", resources)
    image_id = web.post("/api/images", data=photo(), headers=fay).get_json()["images"][0]["id"]
    faults.fail("inputs.delete", times=1)
    assert web.delete(f"/api/images/{image_id}", headers=fay).status_code == 503
    assert LimitsTable(settings).held(fay_id) == 0
    assert web.delete(f"/api/images/{image_id}", headers=fay).status_code in (204, 404)
    assert LimitsTable(settings).held(fay_id) == 0
    assert web.post("/api/images", data=photo(), headers=fay).status_code == 202
