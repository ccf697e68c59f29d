"""Per-caller rate limits (Flask-Limiter), anonymous callers' lower rate, and quotas of images, in the limits table.

Both are shared by every gunicorn process and web instance through DynamoDB (sightfleet/aws/limits.py):
- rate: SIGHTFLEET_RATE_LIMIT requests per window for each caller, across the whole app: an API key's
  or session's owner, or the remote address of anonymous callers (the course endpoint). Over it: 429
  RATE_LIMITED with Retry-After. The store failing must not take the service down with it, so the
  limit fails OPEN: each process then counts on its own in memory (Flask-Limiter's fallback, logged)
  until the table answers again; a caller may get one limit per process meanwhile, never a refusal.
- anonymous rate: SIGHTFLEET_ANONYMOUS_RATE_LIMIT requests per address for callers without credentials,
  counted after authentication (the door, web_tier/door.py, counts every request per address before it).
- quota: SIGHTFLEET_QUOTA_IMAGES images held per owner (0: none), and the anonymous owner's images per
  expiry period (SIGHTFLEET_ANONYMOUS_QUOTA_IMAGES): built here (sightfleet/quota.py), reserved by the
  views that accept uploads (web_tier/reservations.py). It fails CLOSED (503).
"""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import parse_many

from sightfleet.aws.limits import LimitsTable
from sightfleet.config import Settings
from sightfleet.quota import Quota
from web_tier.counters import AddressCounter
from web_tier.errors import error_response, refusal
from web_tier.identity import current_principal
from web_tier.services import services, services_of

log = logging.getLogger(__name__)
STORAGE_URI = "sightfleet+dynamodb://"
# The load balancer's health check, and files that only make a page work, are never limited.
EXEMPT_ENDPOINTS = frozenset({"health.healthz", "static", "ops.plotly", "openapi.docs_asset"})
# Views that accept images (the door bounds their bodies differently).
UPLOAD_ENDPOINTS = ("api.submit_images", "course.classify", "pages.upload", "rekognition.call")


def too_many(who: str, wait_s: int):
    """429 RATE_LIMITED with Retry-After, for a count over its limit."""
    return refusal(429, "RATE_LIMITED", f"too many requests from {who}; try again in {wait_s} s",
                   {"Retry-After": str(wait_s)})


def limit_anonymous():
    """before_request (after authentication): anonymous callers' own, lower rate, per address."""
    counter = services().anonymous_counter
    principal = current_principal()
    if counter is None or request.endpoint in EXEMPT_ENDPOINTS or (principal and principal.via != "anonymous"):
        return None
    wait_s = counter.wait_s(request.remote_addr or "unknown")
    return too_many("this address without credentials", wait_s) if wait_s else None


def caller_key() -> str:
    """Whom a request counts against: its principal's owner, else (anonymous) its remote address."""
    principal = current_principal()
    if principal is not None and principal.via != "anonymous":
        return f"owner:{principal.owner}"
    return f"address:{get_remote_address()}"


def _rate_limited(exc: RateLimitExceeded):
    """429 with Retry-After: the seconds until this caller's window ends."""
    limiter = services().limiter
    assert limiter is not None   # this handler is registered with it
    try:
        wait_s = math.ceil(max(1.0, limiter.current_limit.window[0] - time.time()))
    except Exception as error:  # noqa: BLE001 - the store went away between the hit and this read
        log.warning("rate limit: cannot read when the window ends (%s); answering a minute", error)
        wait_s = 60
    return error_response(429, "RATE_LIMITED", f"the rate limit of {exc.limit.limit} requests is used up; try again in {wait_s} s",
                          {"Retry-After": str(wait_s)})


def address_counter(table: LimitsTable, limit: str, namespace: str) -> AddressCounter | None:
    """A counter of requests per address under limit (`limits` notation); None when the limit is empty."""
    return AddressCounter(table, limit.strip(), namespace) if limit.strip() else None


def quota_of(settings: Settings) -> Quota | None:
    """The image quota the settings ask for, or None.

    It fails closed, so it takes the table's ordinary retries rather than the counters' one try.
    """
    if not (settings.quota_images or settings.anonymous_quota_images):
        return None
    return Quota(LimitsTable(settings), settings.quota_images, settings.anonymous_quota_images,
                 settings.anonymous_expiry_days * 86400)


def install(app: Flask) -> None:
    """Rate-limit every request, as the app's settings say."""
    shared = services_of(app)
    settings, table = shared.settings, shared.limits_table
    app.before_request(limit_anonymous)
    if settings.rate_limit.strip():
        parse_many(settings.rate_limit)  # a malformed setting fails here, at start, not on a request
        limiter = Limiter(
            caller_key, application_limits=[settings.rate_limit], storage_uri=STORAGE_URI,
            storage_options={"table": table}, strategy="fixed-window", headers_enabled=False,
            in_memory_fallback_enabled=True, in_memory_fallback=[settings.rate_limit], swallow_errors=True)
        limiter.request_filter(lambda: request.endpoint in EXEMPT_ENDPOINTS)
        limiter.init_app(app)
        app.register_error_handler(RateLimitExceeded, _rate_limited)
        shared.limiter = limiter
    if settings.quota_images:
        # The quota fails closed (no upload is accepted uncounted), so without its table the web tier
        # cannot take uploads: health says so. The rate limits and the sign-in guard fail open instead.
        shared.health.also_check("limits", table.check)
