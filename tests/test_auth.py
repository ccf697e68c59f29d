"""Authentication and access on every route: keys, sessions, sign-in pages, CSRF, the course endpoint, /healthz."""
from __future__ import annotations

import logging
import re

import pytest

from sightfleet.config import Settings
from sightfleet.memory import memory_resources
from sightfleet.resources import Resources
from tests.support import jpeg_bytes
from web_tier import SESSION_COOKIE, create_app
from web_tier.accounts import Accounts
from web_tier.auth import ACCOUNTS_UNAVAILABLE, required_access, safe_next
from web_tier.csrf import COOKIE as CSRF_COOKIE
from web_tier.signin import BAD_LINK, WRONG_CREDENTIALS
from web_tier.services import services_of

HTML = {"Accept": "text/html"}
PASSWORD = "a long enough password"
ADMIN_ONLY = ["/ops", "/api/ops/summary", "/api/ops/timeseries", "/metrics"]


@pytest.fixture
def accounts(app) -> Accounts:
    return services_of(app).accounts


def csrf_of(client, **request) -> str:
    """The CSRF token that pages give this browser's session (from the sign-in form)."""
    page = client.get("/signin", **request).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, name: str, password: str = PASSWORD, next_url: str = "/gallery"):
    return client.post("/signin", data={"name": name, "password": password, "next": next_url,
                                        "csrf_token": csrf_of(client)})


@pytest.fixture
def person(app, accounts):
    """A browser signed in with a password, as the account 'pat'."""
    accounts.create("pat", password=PASSWORD)
    browser = app.test_client()
    assert sign_in(browser, "pat").status_code == 302
    return browser


def test_anonymous_api_calls_get_401_with_a_bearer_challenge(anonymous_client):
    for path in ("/api/images", "/api/images/abc", "/api/ops/summary", "/metrics", "/keys"):
        reply = anonymous_client.get(path)
        assert reply.status_code == 401, path
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert reply.get_json()["error"]["code"] == "UNAUTHENTICATED"
    assert anonymous_client.post("/api/images", data=jpeg_bytes(), content_type="image/jpeg").status_code == 401


def test_anonymous_pages_redirect_to_sign_in_and_come_back(anonymous_client):
    for path in ("/", "/gallery?album=x", "/ops", "/images/abc", "/keys"):
        reply = anonymous_client.get(path, headers=HTML)
        assert reply.status_code == 302, path
        assert reply.headers["Location"].startswith("/signin?next=")
    assert anonymous_client.get("/signin").status_code == 200
    assert anonymous_client.get("/healthz").status_code == 200
    assert anonymous_client.get("/static/style.css").status_code == 200


def test_unknown_or_malformed_credentials_get_401(client, anonymous_client):
    for header in ("Bearer sfk_not-a-key", "Basic dXNlcjpwYXNz", "Bearer", "sfk_no-scheme"):
        reply = anonymous_client.get("/api/images", headers={"Authorization": header})
        assert reply.status_code == 401, header
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/images").status_code == 200


def test_a_revoked_key_stops_at_the_next_request(client, accounts):
    assert client.get("/api/images").status_code == 200
    key_id = accounts.keys(accounts.get("tester"))[0]["key_id"]
    assert accounts.revoke(key_id)
    reply = client.get("/api/images")
    assert reply.status_code == 401 and reply.get_json()["error"]["code"] == "BAD_CREDENTIALS"


def test_a_deleted_accounts_key_and_session_stop(client, person, accounts):
    accounts.delete("tester")
    accounts.delete("pat")
    assert client.get("/api/images").status_code == 401
    assert person.get("/gallery", headers=HTML).status_code == 302


def test_operations_are_for_admins_only(client, admin_client, person):
    for path in ADMIN_ONLY:
        assert client.get(path).status_code == 403, path
        assert person.get(path).status_code == 403, path
        assert admin_client.get(path).status_code == 200, path
    page = person.get("/ops", headers=HTML)
    assert page.status_code == 403 and b"only admins" in page.data and page.mimetype == "text/html"
    assert b">Ops<" not in person.get("/", headers=HTML).data


def test_metrics_take_a_bearer_key_as_prometheus_sends_it(admin_client, anonymous_client):
    reply = anonymous_client.get("/metrics", headers={"Authorization": f"Bearer {admin_client.api_key}"})
    assert reply.status_code == 200 and b"sightfleet" in reply.data


def test_sign_in_sets_a_session_cookie_and_sign_out_ends_it(app, accounts):
    accounts.create("quinn", password=PASSWORD)
    browser = app.test_client()
    reply = sign_in(browser, "quinn", next_url="/gallery?album=x")
    assert reply.status_code == 302 and reply.headers["Location"] == "/gallery?album=x"
    cookie = next(c for c in reply.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = browser.get("/gallery", headers=HTML)
    assert page.status_code == 200 and b"quinn" in page.data and b"sign-out" in page.data
    assert browser.post("/signout", data={"csrf_token": csrf_of(browser)}).status_code == 302
    assert browser.get_cookie(SESSION_COOKIE) is None
    assert browser.get("/gallery", headers=HTML).status_code == 302


def test_the_session_cookie_is_secure_over_https_and_forwarded_proto_needs_a_trusted_proxy(settings, resources):
    Accounts(resources.accounts).create("rita", password=PASSWORD)
    direct = create_app(settings, resources).test_client()
    assert "Secure" in _session_cookie(direct, base_url="https://localhost")
    assert "Secure" not in _session_cookie(direct, headers={"X-Forwarded-Proto": "https"})
    proxied = create_app(resources=Resources.connect(settings.with_changes(trusted_proxies=1))).test_client()
    assert "Secure" in _session_cookie(proxied, headers={"X-Forwarded-Proto": "https"})


def _session_cookie(client, **request) -> str:
    reply = client.post("/signin", data={"name": "rita", "password": PASSWORD,
                                         "csrf_token": csrf_of(client, **request)}, **request)
    assert reply.status_code == 302
    return next(c for c in reply.headers.getlist("Set-Cookie") if SESSION_COOKIE + "=" in c)


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(app, accounts):
    accounts.create("sam", password=PASSWORD)
    browser = app.test_client()
    wrong = sign_in(browser, "sam", "not the password")
    unknown = sign_in(browser, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert WRONG_CREDENTIALS.encode() in wrong.data
    assert wrong.data.replace(b"sam", b"nobody") == unknown.data
    assert browser.get_cookie(SESSION_COOKIE) is None


def test_signing_in_needs_the_csrf_token(app, accounts):
    accounts.create("tess", password=PASSWORD)
    browser = app.test_client()
    reply = browser.post("/signin", data={"name": "tess", "password": PASSWORD})
    assert reply.status_code == 400 and browser.get_cookie(SESSION_COOKIE) is None


@pytest.mark.parametrize("target, expected", [
    ("/gallery?album=a", "/gallery?album=a"), ("//evil.example/x", "/"), ("https://evil.example/", "/"),
    ("/\\evil.example", "/"), ("gallery", "/"), ("", "/"), ("/ok\n", "/"),
])
def test_next_stays_on_this_site(target, expected):
    assert safe_next(target) == expected


def test_an_offsite_next_after_sign_in_goes_home(app, accounts):
    accounts.create("uma", password=PASSWORD)
    reply = sign_in(app.test_client(), "uma", next_url="https://evil.example/")
    assert reply.status_code == 302 and reply.headers["Location"] == "/"


def test_session_posts_need_the_csrf_token_even_without_the_csrf_cookie(person):
    token = csrf_of(person)
    browser_id = person.get_cookie(CSRF_COOKIE).value
    person.delete_cookie(CSRF_COOKIE)  # a forged request rides on the session cookie alone
    forged = person.post("/api/images", data=jpeg_bytes(), content_type="image/jpeg")
    assert forged.status_code == 400
    person.set_cookie(CSRF_COOKIE, token)   # a cookie that repeats the header is no longer enough
    forged = person.post("/api/images", data=jpeg_bytes(), content_type="image/jpeg", headers={"X-CSRF-Token": token})
    assert forged.status_code == 400
    person.set_cookie(CSRF_COOKIE, browser_id)
    genuine = person.post("/api/images", data=jpeg_bytes(), content_type="image/jpeg", headers={"X-CSRF-Token": token})
    assert genuine.status_code == 202
    assert person.post("/signout").status_code == 400  # not even sign-out without it


def test_requests_with_a_key_need_no_csrf_token(client):
    reply = client.post("/api/images", data=jpeg_bytes(), content_type="image/jpeg")
    assert reply.status_code == 202


def test_the_course_endpoint_is_open_by_default(anonymous_client):
    reply = anonymous_client.post("/", data={})
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "NO_FILE"  # reached the handler


def test_the_course_endpoint_can_be_closed(settings, resources, client):
    closed = create_app(resources=Resources.connect(settings.with_changes(open_course_endpoint=0))).test_client()
    reply = closed.post("/", data={})
    assert reply.status_code == 401 and reply.headers["WWW-Authenticate"].startswith("Bearer")
    closed.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {client.api_key}"
    assert closed.post("/", data={}).status_code == 400  # with a key it reaches the handler again


def test_the_course_principal_is_the_anonymous_owner(app, anonymous_client):
    from flask import g
    with app.test_request_context("/", method="POST"):
        app.preprocess_request()
        assert (g.principal.owner, g.principal.via) == ("anonymous", "anonymous")


def use_link(browser, token: str, next_url: str = "/"):
    """Open a one-time link's page and press its button, as a person does."""
    page = browser.get(f"/signin/link?token={token}&next={next_url}")
    assert page.status_code == 200 and b'id="use-sign-in-link"' in page.data
    return browser.post("/signin/link", data={"token": token, "next": next_url, "csrf_token": csrf_of(browser)})


def test_one_time_links_sign_in_once(app, accounts):
    accounts.create("val", admin=True)
    token = accounts.make_link("val")
    browser = app.test_client()
    reply = use_link(browser, token, "/ops")
    assert reply.status_code == 302 and reply.headers["Location"] == "/ops"
    assert browser.get_cookie(SESSION_COOKIE) is not None
    assert browser.get("/ops", headers=HTML).status_code == 200
    again = use_link(app.test_client(), token)
    assert again.status_code == 400 and BAD_LINK.encode() in again.data


def test_opening_a_link_spends_nothing_and_no_other_site_can_post_it(app, accounts):
    """A chat app's preview (a GET) leaves the link usable; a forged POST without our CSRF token signs nobody in."""
    accounts.create("yan")
    token = accounts.make_link("yan")
    preview = app.test_client()
    assert preview.get(f"/signin/link?token={token}").status_code == 200
    assert preview.get_cookie(SESSION_COOKIE) is None
    forged = app.test_client().post("/signin/link", data={"token": token})
    assert forged.status_code == 400
    assert use_link(app.test_client(), token).status_code == 302   # still good for its owner, once


def test_expired_and_made_up_links_are_refused(app, accounts):
    accounts.create("wes")
    expired = accounts.make_link("wes", ttl_s=-1)
    for token in (expired, "made-up", ""):
        reply = use_link(app.test_client(), token)
        assert reply.status_code == 400 and BAD_LINK.encode() in reply.data


def test_keys_page_shows_a_new_key_once_and_revokes(person, accounts):
    page = person.get("/keys")
    assert page.status_code == 200
    made = person.post("/keys", data={"label": "laptop", "csrf_token": csrf_of(person)})
    assert made.status_code == 200
    key = made.data.split(b'<code id="new-key">')[1].split(b"</code>")[0].decode()
    assert accounts.by_key(key).name == "pat"
    listing = person.get("/keys").data
    assert key.encode() not in listing and b"laptop" in listing
    key_id = next(k["key_id"] for k in accounts.keys(accounts.get("pat")) if k["label"] == "laptop")
    assert person.post(f"/keys/{key_id}/revoke", data={"csrf_token": csrf_of(person)}).status_code == 302
    assert accounts.by_key(key) is None


def test_the_keys_page_cannot_revoke_someone_elses_key(person, client, accounts):
    key_id = accounts.keys(accounts.get("tester"))[0]["key_id"]
    reply = person.post(f"/keys/{key_id}/revoke", data={"csrf_token": csrf_of(person)})
    assert reply.status_code == 404
    assert client.get("/api/images").status_code == 200


def _memory_app(**settings):
    resources, faults = memory_resources(Settings(prefix="mem", **settings))
    return create_app(resources=resources), resources, faults


def test_an_unreachable_accounts_table_answers_503_with_a_message():
    app, resources, faults = _memory_app()
    _, issued = Accounts(resources.accounts).create("xena")
    faults.fail("accounts.get_key")
    reply = app.test_client().get("/api/images", headers={"Authorization": f"Bearer {issued.key}"})
    assert reply.status_code == 503 and reply.headers["Retry-After"]
    assert reply.get_json()["error"]["message"] == ACCOUNTS_UNAVAILABLE
    faults.clear()
    faults.fail("accounts.get_account")
    browser = app.test_client()
    reply = browser.post("/signin", data={"name": "xena", "password": PASSWORD, "csrf_token": csrf_of(browser)})
    assert reply.status_code == 503
    faults.fail("accounts.check")
    assert app.test_client().get("/healthz").status_code == 503  # and health says so


def test_healthz_tells_anonymous_callers_only_whether_it_is_healthy():
    app, resources, faults = _memory_app()
    _, admin = Accounts(resources.accounts).create("yuri", admin=True)
    _, user = Accounts(resources.accounts).create("zoe")
    faults.fail("requests.counts")
    for headers in ({}, {"Authorization": f"Bearer {user.key}"}):
        reply = app.test_client().get("/healthz", headers=headers)
        assert reply.status_code == 503 and reply.headers["Retry-After"]
        assert reply.get_json() == {"status": "unavailable", "reason": "a resource is unreachable (details in the logs)"}
    detailed = app.test_client().get("/healthz", headers={"Authorization": f"Bearer {admin.key}"})
    assert detailed.status_code == 503 and "request queue" in detailed.get_json()["problems"][0]
    faults.clear()
    services_of(app).health.forget()   # a verdict is reused for 1.5 s (web_tier/health.py)
    assert app.test_client().get("/healthz").get_json() == {"status": "ok"}


def test_every_route_has_an_access_rule_and_only_the_listed_ones_are_open(app):
    open_routes = {rule.endpoint for rule in app.url_map.iter_rules()
                   if required_access(rule.endpoint) in ("anyone", "course") and not rule.endpoint.startswith("openapi.")}
    assert open_routes == {"static", "health.healthz", "course.classify", "signin.form", "signin.submit",
                           "signin.link", "signin.redeem_link", "signin.signout",
                           "vocabulary.vocabulary_page", "vocabulary.vocabulary_json"}
    assert required_access("ops.metrics") == "admin" and required_access("api.list_images") == "signed-in"
    assert required_access("some_new_blueprint.view") == "signed-in"
    assert required_access("openapi.document") == "anyone"  # the contract is public


def test_signing_out_everywhere_ends_a_browsers_session_at_its_next_request(person, accounts):
    assert person.get("/gallery", headers=HTML).status_code == 200
    accounts.end_sessions("pat")
    assert person.get("/gallery", headers=HTML).status_code == 302
    assert person.get_cookie(SESSION_COOKIE) is None  # the stale cookie is cleared too


def test_password_guessing_is_held_back_per_name_and_the_right_password_waits_too(app, accounts):
    accounts.create("uma", password=PASSWORD)
    guard = services_of(app).signin_guard
    guard.limits["name"] = 3
    browser = app.test_client()
    assert [sign_in(browser, "uma", f"guess {i}").status_code for i in range(3)] == [401, 401, 401]
    held = sign_in(browser, "uma", PASSWORD)   # right at last, but too late: the window must end first
    assert held.status_code == 429 and 0 < int(held.headers["Retry-After"]) <= 15 * 60
    assert b"too many failed sign-ins" in held.data and browser.get_cookie(SESSION_COOKIE) is None
    accounts.create("vic", password=PASSWORD)
    assert sign_in(browser, "vic").status_code == 302   # another name from the same address is not held


def test_password_guessing_across_names_is_held_back_per_address(app, accounts):
    guard = services_of(app).signin_guard
    guard.limits["address"] = 4
    browser = app.test_client()
    assert [sign_in(browser, f"name{i}", "guess").status_code for i in range(5)] == [401] * 4 + [429]


def test_the_sign_in_guard_lets_attempts_through_when_its_table_is_unreachable(settings, resources, caplog):
    from sightfleet.aws.limits import LimitsTable
    from web_tier.signin_guard import SignInGuard
    Accounts(resources.accounts).create("wes", password=PASSWORD)
    app = create_app(settings, resources)
    services_of(app).signin_guard = SignInGuard(LimitsTable(settings.with_changes(prefix="no-such-stack")),
                                                 per_name=1)
    browser = app.test_client()
    with caplog.at_level(logging.WARNING):
        assert sign_in(browser, "wes", "guess").status_code == 401
        assert sign_in(browser, "wes").status_code == 302   # not held: nothing could be counted
    assert "sign-in guard" in caplog.text


def test_a_session_cookie_copied_before_sign_out_stops_working_after_it(app, accounts):
    accounts.create("xena", password=PASSWORD)
    browser = app.test_client()
    assert sign_in(browser, "xena").status_code == 302
    stolen = browser.get_cookie(SESSION_COOKIE).value
    thief = app.test_client()
    thief.set_cookie(SESSION_COOKIE, stolen)
    assert thief.get("/api/images").status_code == 200
    assert browser.post("/signout", data={"csrf_token": csrf_of(browser)}).status_code == 302
    assert thief.get("/api/images").status_code == 401   # signed out on the server, not only in one browser


def test_an_api_key_can_neither_mint_nor_revoke_keys(client, accounts):
    token = "A" * 43
    client.set_cookie(CSRF_COOKIE, token)   # a program can set any cookie it likes
    assert client.get("/keys").status_code == 403
    minted = client.post("/keys", data={"label": "forever", "csrf_token": token})
    assert minted.status_code == 403 and b"sfk_" not in minted.data
    assert client.post("/keys/abc/revoke", data={"csrf_token": token}).status_code == 403
    assert client.get("/api/images").status_code == 200   # the key itself still works for the API
