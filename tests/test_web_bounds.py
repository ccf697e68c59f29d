"""The web tier's bounds before work, through the Flask app on the real local endpoint: sign-in, keys, the door,
CSRF, caching, waits. (The served process's memory and gunicorn's own answers: test_web_bounds_served.py.)"""
from __future__ import annotations

import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher

from sightfleet.config import Settings
from sightfleet.resources import Resources
from tests.browser import chromium, requires_chromium, screenshot
from tests.support import bearer, free_port, jpeg_bytes
from tests.test_browser_upload import wait_until
from web_tier import create_app
from web_tier.accounts import Accounts
from web_tier.csrf import COOKIE as CSRF_COOKIE
from web_tier.door import DEFAULT_BODY_BYTES, FORM_BODY_BYTES, body_limit
from web_tier.signin_guard import PER_PAIR
from web_tier.waiting import WaitBudget, WaitRefused
from web_tier.services import services_of

PASSWORD = "a long enough password"
BURST = 50


def make_app(settings):
    app = create_app(settings, Resources.connect(settings))
    app.config.update(TESTING=True)
    return app


def token_of(browser, path: str = "/signin", **request) -> str:
    page = browser.get(path, **request).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(browser, name: str, password: str = PASSWORD, address: str = "127.0.0.1"):
    environ = {"REMOTE_ADDR": address}
    return browser.post("/signin", data={"name": name, "password": password,
                                         "csrf_token": token_of(browser, environ_base=environ)}, environ_base=environ)


# --- sign-in: counted first, verified within a bound ------------------------------------------------------

def test_a_concurrent_burst_of_50_wrong_passwords_gets_at_most_the_stated_number_of_verifications(settings_factory):
    settings = settings_factory(signin_concurrency=BURST, rate_limit="", address_rate_limit="")
    app = make_app(settings)
    Accounts(Resources.connect(settings).accounts).create("target", password=PASSWORD)
    browsers = [app.test_client() for _ in range(BURST)]
    tokens = [token_of(browser) for browser in browsers]
    start = threading.Barrier(BURST)

    def guess(i: int) -> int:
        start.wait()
        return browsers[i].post("/signin", data={"name": "target", "password": f"guess {i}",
                                                 "csrf_token": tokens[i]}).status_code

    with ThreadPoolExecutor(BURST) as pool:
        statuses = list(pool.map(guess, range(BURST)))
    verified = services_of(app).verification_gate.verifications
    print(f"a burst of {BURST} wrong passwords: {verified} verified, {statuses.count(429)} held back (429)")
    assert verified <= PER_PAIR and statuses.count(401) == verified, (verified, statuses)
    assert statuses.count(429) == BURST - verified
    # The strict limit is the name from this address: the same name from another address goes on.
    assert sign_in(app.test_client(), "target", address="10.9.9.9").status_code == 302


def test_a_name_held_back_for_passwords_still_signs_in_with_a_one_time_link(settings_factory):
    settings = settings_factory(rate_limit="", address_rate_limit="")
    app = make_app(settings)
    accounts = Accounts(Resources.connect(settings).accounts)
    accounts.create("held", password=PASSWORD)
    services_of(app).signin_guard.limits["name"] = 3
    for i in range(4):   # from four addresses: the name's own, higher limit
        sign_in(app.test_client(), "held", "wrong", address=f"10.0.0.{i}")
    assert sign_in(app.test_client(), "held", address="10.0.0.9").status_code == 429
    browser = app.test_client()
    token = accounts.make_link("held")
    csrf = token_of(browser, f"/signin/link?token={token}")
    assert browser.post("/signin/link", data={"token": token, "csrf_token": csrf}).status_code == 302
    assert browser.get("/keys").status_code == 200


def test_too_many_verifications_at_once_answer_503_with_retry_after_at_once(settings_factory):
    app = make_app(settings_factory(signin_concurrency=1, rate_limit="", address_rate_limit=""))
    gate = services_of(app).verification_gate
    browser = app.test_client()
    with gate.slot():   # another sign-in is being verified
        started = time.monotonic()
        reply = sign_in(browser, "anyone")
        assert time.monotonic() - started < 2
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
    assert sign_in(browser, "anyone").status_code == 401   # the slot is free again


def test_a_hash_from_older_parameters_is_rehashed_on_sign_in_and_sessions_go_on(settings_factory):
    settings = settings_factory(rate_limit="", address_rate_limit="")
    app = make_app(settings)
    accounts = Accounts(Resources.connect(settings).accounts)
    account, _ = accounts.create("old")
    accounts.store.update_account({**account, "password_hash": PasswordHasher().hash(PASSWORD)})   # 64 MiB, p=4
    earlier = app.test_client()
    assert sign_in(earlier, "old").status_code == 302
    stored = accounts.get("old")["password_hash"]
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")   # OWASP's first recommended configuration
    assert sign_in(app.test_client(), "old").status_code == 302 and accounts.get("old")["password_hash"] == stored
    assert earlier.get("/keys").status_code == 200   # the rehash ended no session


# --- keys: a recent password to mint one, last use shown, revoked with a password change ------------------

@pytest.fixture
def person(settings_factory):
    settings = settings_factory(rate_limit="", address_rate_limit="")
    app = make_app(settings)
    accounts = Accounts(Resources.connect(settings).accounts)
    accounts.create("pat", password=PASSWORD)
    browser = app.test_client()
    assert sign_in(browser, "pat").status_code == 302
    return browser, accounts


def age_sign_in(browser, seconds: float) -> None:
    with browser.session_transaction() as session:
        session["auth_at"] -= seconds


def test_minting_a_key_needs_a_recent_sign_in_or_the_password(person):
    browser, accounts = person
    assert b"sfk_" in browser.post("/keys", data={"label": "fresh", "csrf_token": token_of(browser, "/keys")}).data
    age_sign_in(browser, 11 * 60)
    page = browser.get("/keys").get_data(as_text=True)
    assert 'name="password"' in page
    refused = browser.post("/keys", data={"label": "stale", "csrf_token": token_of(browser, "/keys")})
    assert refused.status_code == 403 and b"sfk_" not in refused.data and b"confirm your password" in refused.data
    wrong = browser.post("/keys", data={"label": "x", "password": "wrong", "csrf_token": token_of(browser, "/keys")})
    assert wrong.status_code == 403 and b"sfk_" not in wrong.data
    made = browser.post("/keys", data={"label": "confirmed", "password": PASSWORD,
                                       "csrf_token": token_of(browser, "/keys")})
    assert made.status_code == 200 and b"sfk_" in made.data
    labels = [k["label"] for k in accounts.keys(accounts.get("pat"))]
    assert labels == ["created with the account", "fresh", "confirmed"]


def test_the_keys_page_shows_when_each_key_was_last_used(person):
    browser, accounts = person
    issued = accounts.issue_key(accounts.get("pat"), "laptop")
    assert "never" in browser.get("/keys").get_data(as_text=True)
    assert browser.application.test_client().get("/api/images", headers=bearer(issued.key)).status_code == 200
    [used] = [k for k in accounts.keys(accounts.get("pat")) if k["key_id"] == issued.key_id]
    assert used["last_used_at"] and used["last_used_at"] in browser.get("/keys").get_data(as_text=True)


def test_changing_the_password_offers_to_revoke_the_keys_made_since_the_last_change(person):
    browser, accounts = person
    other_device = browser.application.test_client()
    assert sign_in(other_device, "pat").status_code == 302
    account = accounts.get("pat")
    suspect, kept = accounts.issue_key(account, "made by a thief"), accounts.issue_key(account, "mine")
    page = browser.get("/account/password").get_data(as_text=True)
    assert suspect.key_id in page and kept.key_id in page
    form = {"password": PASSWORD, "new_password": "another long password", "repeat_password": "another long password",
            "revoke": [suspect.key_id], "csrf_token": token_of(browser, "/account/password")}
    assert browser.post("/account/password", data=form).status_code == 303
    left = {key["key_id"] for key in accounts.keys(accounts.get("pat"))}
    assert suspect.key_id not in left and kept.key_id in left
    assert browser.get("/keys").status_code == 200                  # this browser goes on
    assert other_device.get("/keys").status_code == 401             # every other session ended
    assert accounts.keys_since_password_change(accounts.get("pat")) == []
    wrong = dict(form, password="not it", csrf_token=token_of(browser, "/account/password"))
    assert browser.post("/account/password", data=wrong).status_code == 403
    services_of(browser.application).signin_guard.limits["pair"] = 1   # the same guard as sign-in's
    held = browser.post("/account/password", data=dict(wrong, csrf_token=token_of(browser, "/account/password")))
    assert held.status_code == 429 and held.get_json()["error"]["code"] == "TOO_MANY_ATTEMPTS"
    assert int(held.headers["Retry-After"]) > 0


# --- the door: bodies and addresses before anything else ---------------------------------------------------

SETTINGS = Settings(max_upload_mb=10)
ONE_IMAGE = SETTINGS.max_upload_bytes


@pytest.mark.parametrize("endpoint, mimetype, limit", [
    ("signin.submit", "application/x-www-form-urlencoded", FORM_BODY_BYTES),
    ("signin.create_key", "multipart/form-data", FORM_BODY_BYTES),
    ("signin.redeem_link", "application/x-www-form-urlencoded", FORM_BODY_BYTES),
    ("account.change_password", "application/x-www-form-urlencoded", FORM_BODY_BYTES),
    ("course.classify", "multipart/form-data", ONE_IMAGE + 64 * 1024),
    ("api.submit_images", "image/jpeg", ONE_IMAGE + 1),
    ("api.submit_images", "multipart/form-data", 10 * ONE_IMAGE + 2**20),
    ("pages.upload", "multipart/form-data", 10 * ONE_IMAGE + 2**20),
    ("api.list_images", "", DEFAULT_BODY_BYTES),
    (None, "multipart/form-data", DEFAULT_BODY_BYTES),   # no route: a 404 or 405 to be
])
def test_each_endpoint_has_its_body_limit(endpoint, mimetype, limit):
    assert body_limit(endpoint, mimetype, SETTINGS) == limit


def test_every_request_is_counted_by_address_before_authentication(settings_factory):
    settings = settings_factory(address_rate_limit="6/minute", rate_limit="", anonymous_rate_limit="")
    web = make_app(settings).test_client()
    at = {"environ_base": {"REMOTE_ADDR": "10.1.1.1"}}
    refusals = [web.get("/api/images", headers=bearer("sfk_made_up"), **at).status_code,   # bad key
                web.post("/signin", data={"name": "x", "password": "y"}, **at).status_code,  # no CSRF token
                web.get("/no/such/page", **at).status_code, web.delete("/signin", **at).status_code,
                web.get("/healthz", **at).status_code, web.get("/api/images", **at).status_code]
    assert refusals == [401, 400, 404, 405, 200, 401]
    flood = web.get("/no/such/page", **at)
    assert flood.status_code == 429 and flood.get_json()["error"]["code"] == "RATE_LIMITED"
    assert 0 < int(flood.headers["Retry-After"]) <= 60
    assert web.get("/no/such/page", environ_base={"REMOTE_ADDR": "10.1.1.2"}).status_code == 404


def test_anonymous_callers_have_a_lower_rate_than_signed_in_ones(settings_factory):
    settings = settings_factory(anonymous_rate_limit="2/minute", rate_limit="5/minute", address_rate_limit="")
    web = make_app(settings).test_client()
    assert [web.post("/", data={}).status_code for _ in range(3)] == [400, 400, 429]
    _, issued = Accounts(Resources.connect(settings).accounts).create("keyed")
    assert [web.get("/api/images", headers=bearer(issued.key)).status_code for _ in range(3)] == [200] * 3


def test_a_healthz_verdict_is_reused_for_a_second_or_two(settings_factory):
    app = make_app(settings_factory(address_rate_limit=""))
    runs = []
    services_of(app).health.also_check("counted", lambda: runs.append(1))
    web = app.test_client()
    assert [web.get("/healthz").status_code for _ in range(5)] == [200] * 5 and len(runs) == 1
    time.sleep(1.6)
    assert web.get("/healthz").status_code == 200 and len(runs) == 2


# --- CSRF, cookies, caching ----------------------------------------------------------------------------------

@pytest.fixture
def app(settings_factory):
    return make_app(settings_factory(rate_limit="", address_rate_limit=""))


def test_a_non_ascii_csrf_token_is_a_400_not_a_500(app):
    browser = app.test_client()
    token_of(browser)
    for token in ("é" * 64, "\u202e" + "a" * 63, "日本"):
        reply = browser.post("/signin", data={"name": "x", "password": "y", "csrf_token": token})
        assert reply.status_code == 400
        header = browser.post("/signin", data={"name": "x"}, headers={"X-CSRF-Token": token.encode().decode("latin-1")})
        assert header.status_code == 400


def test_a_csrf_token_is_bound_to_its_browser_and_session(app):
    Accounts(services_of(app).resources.accounts).create("tia", password=PASSWORD)
    first, second = app.test_client(), app.test_client()
    theirs = token_of(second)
    assert theirs != token_of(first)   # the token is no cookie value: another browser's is useless
    assert first.post("/signin", data={"name": "tia", "password": PASSWORD, "csrf_token": theirs}).status_code == 400
    assert first.get_cookie(CSRF_COOKIE).value not in (theirs, token_of(first))
    assert sign_in(first, "tia").status_code == 302
    signed_in = token_of(first, "/keys")
    Accounts(services_of(app).resources.accounts).end_sessions("tia")
    assert sign_in(first, "tia").status_code == 302   # a new session: a new epoch
    assert first.post("/keys", data={"csrf_token": signed_in}).status_code == 400


def test_over_https_both_cookies_take_the_host_prefix(app):
    Accounts(services_of(app).resources.accounts).create("una", password=PASSWORD)
    browser = app.test_client()
    https = {"base_url": "https://localhost"}
    token = token_of(browser, **https)
    reply = browser.post("/signin", data={"name": "una", "password": PASSWORD, "csrf_token": token}, **https)
    assert reply.status_code == 302
    cookies = reply.headers.getlist("Set-Cookie")
    assert any(c.startswith("__Host-sightfleet_session=") and "Secure" in c and "Path=/" in c for c in cookies)
    assert browser.get_cookie("__Host-sightfleet_csrf", domain="localhost") is not None
    assert browser.get("/keys", **https).status_code == 200
    assert app.test_client().get("/signin").headers.getlist("Set-Cookie")[0].startswith("sightfleet_csrf=")


def test_every_answer_to_a_signed_in_caller_is_no_store_and_image_links_live_minutes(app):
    _, issued = Accounts(services_of(app).resources.accounts).create("vee")
    web = app.test_client()
    for path in ("/api/images", "/gallery", "/no/such/thing", "/api/openapi.json"):
        assert web.get(path, headers=bearer(issued.key)).headers["Cache-Control"] == "no-store", path
    assert "no-store" not in web.get("/healthz").headers.get("Cache-Control", "")
    accepted = web.post("/api/images", data=jpeg_bytes(scale=0.2), content_type="image/jpeg",
                        headers=bearer(issued.key)).get_json()["images"][0]
    from web_tier.present import present
    with app.test_request_context():
        shown = present({**accepted, "thumbnail_key": "thumbnails/x/y.jpg"})
    assert int(parse_qs(urlsplit(shown["thumbnail_url"]).query)["X-Amz-Expires"][0]) <= 600


# --- waits: bounded per caller --------------------------------------------------------------------------------

@pytest.mark.parametrize("held, caller, anonymous, refused", [
    ([], "a", False, False),
    ([("a", False)], "a", False, True),          # a caller's share is one here
    ([("a", False)], "b", False, False),
    ([("x", True)], "y", True, False),
    ([("x", True), ("y", True)], "z", True, True),   # anonymous callers together hold two
    ([("x", True), ("y", True)], "b", False, False),  # signed-in callers are not held by them
])
def test_the_wait_budget(held, caller, anonymous, refused):
    budget = WaitBudget(per_caller=1, anonymous=2)
    slots = [budget.slot(*each) for each in held]
    for slot in slots:
        slot.__enter__()
    if refused:
        with pytest.raises(WaitRefused), budget.slot(caller, anonymous):
            pass
    else:
        with budget.slot(caller, anonymous):
            pass
    for slot in slots:
        slot.__exit__(None, None, None)
    with budget.slot(caller, anonymous):   # everything given back
        pass


def test_a_caller_past_its_waits_gets_202_with_the_status_url_at_once(settings_factory, monkeypatch):
    from web_tier import course_endpoint
    monkeypatch.setattr(course_endpoint, "WAIT_S", 4)
    settings = settings_factory(waits_per_caller=1, rate_limit="", address_rate_limit="", anonymous_quota_images=0)
    app = make_app(settings)

    def course_call():
        return app.test_client().post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.2)), "a.jpg")})

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(course_call)
        time.sleep(1.0)   # the first request is waiting for its result now
        started = time.monotonic()
        second = course_call()
        assert time.monotonic() - started < 2
        assert second.status_code == 202 and second.get_json()["status_url"] == second.headers["Location"]
        assert second.get_json()["status"] == "QUEUED"
        assert waiting.result().status_code == 504   # no worker: the first waited its full time
    documented = app.test_client().get("/api/openapi.json").get_json()["paths"]["/"]["post"]["responses"]["202"]
    assert set(second.get_json()) <= set(documented_image_fields(app)) and "Location" in documented["headers"]


def documented_image_fields(app) -> dict:
    return app.test_client().get("/api/openapi.json").get_json()["components"]["schemas"]["Image"]["properties"]


# --- the anonymous owner's photos expire -------------------------------------------------------------------

def test_anonymous_photos_expire_and_one_process_of_the_stack_sweeps_per_hour(settings_factory, monkeypatch):
    from web_tier import course_endpoint
    monkeypatch.setattr(course_endpoint, "WAIT_S", 0.1)
    settings = settings_factory(rate_limit="", address_rate_limit="", anonymous_expiry_days=2)
    first, second = make_app(settings), make_app(settings)   # two processes of one stack
    web = first.test_client()
    for name in ("old.jpg", "new.jpg"):
        assert web.post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.2)), name)}).status_code == 504
    _, issued = Accounts(Resources.connect(settings).accounts).create("owner")
    kept = web.post("/api/images", data=jpeg_bytes(scale=0.2), content_type="image/jpeg",
                    headers=bearer(issued.key)).get_json()["images"][0]
    resources = Resources.connect(settings)
    anonymous = resources.results.page(None, None, 10, None, "anonymous")[0]
    [old] = [doc for doc in anonymous if doc["filename"] == "old.jpg"]
    sent = time.time()
    # Three days on: past the expiry of both anonymous images; the keyed image is no one's to expire.
    assert services_of(first).expiry.maybe_sweep(now=sent + 3 * 86400) == 2
    assert services_of(second).expiry.maybe_sweep(now=sent + 3 * 86400) is None   # swept this hour already
    assert resources.results.page(None, None, 10, None, "anonymous")[0] == []
    assert web.get(f"/api/images/{kept['id']}", headers=bearer(issued.key)).status_code == 200
    assert resources.results.get(old["id"])["status"] == "DELETED"
    assert services_of(first).expiry.sweep(sent + 86400) == 0   # a day on: nothing was old enough


# --- the key and password pages in Chromium -------------------------------------------------------------------

@requires_chromium
def test_changing_the_password_in_chromium_revokes_the_keys_it_offers(settings_factory):
    from werkzeug.serving import make_server
    settings = settings_factory(rate_limit="", address_rate_limit="")
    app = make_app(settings)
    accounts = Accounts(Resources.connect(settings).accounts)
    account, _ = accounts.create("cleo", password=PASSWORD)
    suspect = accounts.issue_key(account, "not mine")
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with chromium() as driver:
            driver.get(url + "/signin")
            driver.find_element("name", "name").send_keys("cleo")
            driver.find_element("name", "password").send_keys(PASSWORD)
            driver.find_element("css selector", ".signin-form button").click()
            wait_until(driver, lambda d: "/signin" not in d.current_url, 10, "the sign-in")
            driver.get(url + "/keys")
            assert "Last used" in driver.page_source and "never" in driver.page_source
            screenshot(driver, "keys-with-last-use")
            driver.get(url + "/account/password")
            box = driver.find_element("css selector", f'input[name="revoke"][value="{suspect.key_id}"]')
            assert not box.is_selected()   # offered: the person chooses
            box.click()
            screenshot(driver, "password-change")
            driver.find_element("name", "password").send_keys(PASSWORD)
            for field in ("new_password", "repeat_password"):
                driver.find_element("name", field).send_keys("a new long password")
            driver.find_element("css selector", ".signin-form button").click()
            wait_until(driver, lambda d: d.current_url.endswith("/keys"), 10, "the keys page after the change")
            assert suspect.key_id not in driver.page_source and driver.find_elements("css selector", ".key-table")
            screenshot(driver, "keys-after-password-change")
            assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        server.shutdown()
    assert accounts.by_key(suspect.key) is None and accounts.by_password("cleo", "a new long password")
