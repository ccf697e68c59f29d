"""The web tier: Flask app factory with one blueprint per concern."""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from sightfleet.aws.limits import LimitsTable
from sightfleet.aws.secrets import secret_string
from sightfleet.aws.webhooks import WebhookTable
from sightfleet.config import Settings
from sightfleet.resources import Resources
from sightfleet.secretbox import credentials_box
from web_tier.accounts import Accounts
from web_tier.albums import Albums
from web_tier.alerts import Alerts
from web_tier.cache import TtlCache
from web_tier.expiry import AnonymousExpiry
from web_tier.health_probe import HealthProbe
from web_tier.opsdata import OpsData
from web_tier.reservations import count_accepted
from web_tier.services import EXTENSION, Services, services_of
from web_tier.signin_guard import SignInGuard, VerificationGate
from web_tier.submit import MAX_IMAGES_PER_REQUEST, Submitter
from web_tier.waiting import ResultWaiter, WaitBudget
from web_tier.webhooks.service import Webhooks

log = logging.getLogger(__name__)
# Form parts beside the files: album, new_album and csrf_token on the upload form, with room to spare.
FORM_FIELDS = 10
SESSION_COOKIE = "sightfleet_session"
SESSION_LIFETIME = timedelta(days=7)


class _SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure and named `__Host-...` exactly when the request came over HTTPS."""

    def get_cookie_secure(self, app) -> bool:
        return request.is_secure

    def get_cookie_name(self, app) -> str:
        from web_tier.csrf import cookie_name
        return cookie_name(super().get_cookie_name(app))


def session_key(settings: Settings) -> str:
    """The key that signs session cookies: SIGHTFLEET_SECRET_KEY, the deployed stack's secret, or a random one."""
    if settings.secret_key:
        return settings.secret_key
    if settings.secret_key_secret:
        return secret_string(settings, settings.secret_key_secret)
    log.warning("no SIGHTFLEET_SECRET_KEY: sessions are signed with a random key of this process, so they end "
                "when it restarts and other processes do not accept them (scripts/run and scripts/deploy set one)")
    return secrets.token_urlsafe(32)


def _noting(albums: Albums):
    """What the Submitter tells of each accepted image: the album chooser learns it, the quota keeps its place."""
    def accepted(result: dict) -> None:
        albums.note(result)
        count_accepted()
    return accepted


def build_services(resources: Resources) -> Services:
    """The app's shared objects, each built once from the resources and their settings."""
    from web_tier.limits import address_counter, quota_of
    from web_tier.ops import SIGNALS_S
    settings = resources.settings
    box = credentials_box(settings)
    albums = Albums(resources.results)
    # The counters every request meets fail open, so they must also fail fast: a hung table costs each
    # process about two seconds before it counts in memory, not botocore's retries on every request.
    limits_table = LimitsTable(settings, fail_fast=True)
    return Services(
        resources=resources, albums=albums,
        submitter=Submitter(resources, settings.max_upload_bytes, on_accept=_noting(albums)),
        waiter=ResultWaiter(resources.results),
        wait_budget=WaitBudget(settings.waits_per_caller, settings.anonymous_waits),
        health=HealthProbe(resources), accounts=Accounts(resources.accounts, box),
        webhooks=Webhooks(WebhookTable(settings), box, settings.is_local),
        limits_table=limits_table,
        door_counter=address_counter(limits_table, settings.address_rate_limit, "door"),
        anonymous_counter=address_counter(limits_table, settings.anonymous_rate_limit, "anonymous"),
        quota=quota_of(settings),
        expiry=AnonymousExpiry(resources, limits_table, settings.anonymous_expiry_days),
        signin_guard=SignInGuard(limits_table), verification_gate=VerificationGate(settings.signin_concurrency),
        # The audit trail as the ops summary shows it: read at most once a second, however many dashboards
        # poll; health checks cost a call per resource: the alerts run them at most every SIGNALS_S.
        ops=OpsData(resources), ops_alerts=Alerts(), ops_audit=TtlCache(1.0), ops_signals=TtlCache(SIGNALS_S))


def create_app(settings: Settings | None = None, resources: Resources | None = None) -> Flask:
    """Build the app; settings and resources are read once here and passed inward.

    Given resources carry their own settings, which win; `settings` only serves to connect without them.
    """
    resources = resources or Resources.connect(settings or Settings.from_env())
    settings = resources.settings
    app = Flask(__name__)
    if settings.trusted_proxies:
        # Behind a load balancer: its X-Forwarded-Proto says whether the client used HTTPS. Trusted only when
        # configured, since anyone can send that header to a web tier reached directly.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)
    app.secret_key = session_key(settings)
    app.session_interface = _SessionCookies()
    app.config.update(SESSION_COOKIE_NAME=SESSION_COOKIE, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME)
    # Werkzeug enforces these while it reads the body; the door (web_tier/door.py) lowers the length per
    # endpoint before anything reads. (Flask's MAX_FORM_MEMORY_SIZE, 500 kB for a text field, stays:
    # werkzeug also applies it to its parse buffer, so it must stay well above the 64 kB that the parser
    # reads at a time.)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_upload_bytes * MAX_IMAGES_PER_REQUEST + 1024 * 1024,
                      MAX_FORM_PARTS=MAX_IMAGES_PER_REQUEST + FORM_FIELDS)
    app.extensions[EXTENSION] = build_services(resources)

    from web_tier import (account, api, auth, course_endpoint, csrf, display, door, errors, features, health, labels,
                          ops,
                          pages, reprocess, signin, vocabulary)
    from web_tier.rekognition import views as rekognition
    from web_tier.webhooks import views as webhooks
    errors.register(app)
    door.install(app)   # first: before authentication, CSRF and routing's refusals
    auth.install(app, bool(settings.open_course_endpoint))
    csrf.install(app)
    display.install(app)
    for module in (health, api, pages, course_endpoint, ops, signin, account, webhooks, vocabulary, labels, reprocess,
                   features):
        app.register_blueprint(module.bp)
    from web_tier import limits, openapi, reservations, security
    for extension in (security, openapi, rekognition, reservations, limits):
        extension.install(app)
    app.before_request(services_of(app).expiry.ensure_started)
    return app
