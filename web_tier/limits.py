"""Per-caller rate limits (Flask-Limiter), anonymous callers' lower rate, and quotas of images, in the limits table.

Both are shared by every gunicorn process and web instance through DynamoDB (sightfleet/aws/limits.py):
- rate: SIGHTFLEET_RATE_LIMIT requests per window for each caller, across the whole app: an API key's
  or session's owner, or the remote address of anonymous callers (the course endpoint). Over it: 429
  RATE_LIMITED with Retry-After. The store failing must not take the service down with it, so the
  limit fails OPEN: each process then counts on its own in memory (Flask-Limiter's fallback, logged)
  until the table answers again; a caller may get one limit per process meanwhile, never a refusal.
- anonymous rate: SIGHTFLEET_ANONYMOUS_RATE_LIMIT requests per address for callers without credentials,
  counted after authentication (the door, web_tier/door.py, counts every request per address before it).
- quota: SIGHTFLEET_QUOTA_IMAGES images held per owner (0: none); the anonymous owner's images are
  counted per expiry period instead (SIGHTFLEET_ANONYMOUS_QUOTA_IMAGES, see Quota). An upload reserves its images
  before anything is read from it (429 QUOTA_EXCEEDED when they do not fit) and gives back, when
  the request ends, the ones that were not accepted; deleting images calls release(). The quota
  fails CLOSED (503): an image accepted uncounted would stay uncounted, so the owner could exceed
  the quota for good, and a later release would take another image's place.
"""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import parse, parse_many
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from sightfleet.aws.limits import LimitsTable
from sightfleet.errors import SightfleetError
from web_tier.errors import error_response, refusal
from web_tier.identity import ANONYMOUS_OWNER, current_principal
from web_tier.submit import COURSE_FIELDS, MAX_IMAGES_PER_REQUEST

log = logging.getLogger(__name__)
STORAGE_URI = "sightfleet+dynamodb://"
# The load balancer's health check, and files that only make a page work, are never limited.
EXEMPT_ENDPOINTS = frozenset({"health.healthz", "static", "ops.plotly", "openapi.docs_asset"})
# Views that accept images, and how many images a request to each carries.
UPLOAD_ENDPOINTS = ("api.submit_images", "course.classify", "pages.upload", "rekognition.call")
# A quota is not a window: when a client may try again is up to it (deleting images); this is a hint.
QUOTA_RETRY_AFTER_S = 60
ANONYMOUS_IMAGES = "anonymous-images"   # the anonymous owner's window of images sent
SHARED_RETRY_S = 10   # how long an address counter counts in memory before it tries the table again


class DynamoStorage(Storage):
    """A `limits` storage on the limits table (fixed windows: all that one atomic counter needs)."""

    STORAGE_SCHEME = ["sightfleet+dynamodb"]

    def __init__(self, uri: str | None = None, table: LimitsTable | None = None, **options):
        super().__init__(uri, **options)
        self.table = table

    @property
    def base_exceptions(self):
        return SightfleetError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.table.hit(key, int(expiry), amount)

    def get(self, key: str) -> int:
        return self.table.window(key)[0]

    def get_expiry(self, key: str) -> float:
        return self.table.window(key)[1]

    def check(self) -> bool:
        try:
            self.table.check()
        except SightfleetError as exc:
            log.warning("the limits table is still unreachable: %s", exc)
            return False
        return True

    def reset(self) -> int | None:
        return self.table.clear_all()

    def clear(self, key: str) -> None:
        self.table.clear(key)


class AddressCounter:
    """Requests per remote address in fixed windows, in the limits table or (while it is out of reach) in memory."""

    def __init__(self, table: LimitsTable, limit: str, namespace: str):
        self.limit, self.namespace = parse(limit), namespace
        self._shared = FixedWindowRateLimiter(DynamoStorage(table=table))
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._shared_down_until = 0.0   # while the table is out of reach, requests do not each wait for it

    def wait_s(self, address: str) -> int:
        """Count one request from address; 0 when it may go on, else the seconds until its window ends."""
        if time.monotonic() >= self._shared_down_until:
            try:
                return self._wait(self._shared, address)
            except SightfleetError as exc:
                log.warning("address limit: the limits table is out of reach (%s); counting in memory for %s s",
                            exc, SHARED_RETRY_S)
                self._shared_down_until = time.monotonic() + SHARED_RETRY_S
        return self._wait(self._local, address)

    def _wait(self, limiter: FixedWindowRateLimiter, address: str) -> int:
        if limiter.hit(self.limit, self.namespace, address):
            return 0
        reset_at = limiter.get_window_stats(self.limit, self.namespace, address).reset_time
        return math.ceil(max(1.0, reset_at - time.time()))


def too_many(who: str, wait_s: int):
    """429 RATE_LIMITED with Retry-After, for a count over its limit."""
    return refusal(429, "RATE_LIMITED", f"too many requests from {who}; try again in {wait_s} s",
                   {"Retry-After": str(wait_s)})


def limit_anonymous():
    """before_request (after authentication): anonymous callers' own, lower rate, per address."""
    counter: AddressCounter | None = current_app.extensions["limits"]["anonymous"]
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


def owner_of_request() -> str:
    """The owner the request's images will belong to."""
    principal = current_principal()
    return principal.owner if principal is not None else ANONYMOUS_OWNER


def images_in_request() -> int:
    """How many images an upload carries (0 when it cannot be accepted anyway: its view says why)."""
    if request.endpoint == "api.submit_images" and request.mimetype.startswith("image/"):
        return 1  # a raw body: counted without reading it
    if request.endpoint == "rekognition.call":
        return 1  # one image a call (a call the protocol refuses gives it back at once)
    if request.mimetype != "multipart/form-data":
        return 0
    if request.endpoint == "course.classify":
        return int(any(field in request.files for field in COURSE_FIELDS))
    files = [f for f in request.files.getlist("file") if request.endpoint != "pages.upload" or f.filename]
    return len(files) if len(files) <= MAX_IMAGES_PER_REQUEST else 0


class Quota:
    """Images held per owner, at most `limit` each (0: no quota, nothing counted), and the anonymous owner's
    images per window of anonymous_window_s, at most anonymous_limit (0: counted as any owner's).

    Anonymous photos expire (web_tier/expiry.py), so the anonymous owner's count is of images sent in
    the last window rather than images held: what expires need not be counted off one by one.
    """

    def __init__(self, table: LimitsTable, limit: int, anonymous_limit: int = 0, anonymous_window_s: int = 0):
        self.table, self.limit = table, limit
        self.anonymous_limit, self.anonymous_window_s = anonymous_limit, anonymous_window_s

    def counts_by_window(self, owner: str) -> bool:
        return owner == ANONYMOUS_OWNER and self.anonymous_limit > 0

    def _fits(self, owner: str, count: int) -> bool:
        """Count the images, unless they do not fit (then nothing stays counted)."""
        if not self.counts_by_window(owner):
            return self.table.reserve(owner, count, self.limit)
        if self.table.hit(ANONYMOUS_IMAGES, self.anonymous_window_s, count) <= self.anonymous_limit:
            return True
        self.table.give_back(ANONYMOUS_IMAGES, count)
        return False

    def _refusal(self, owner: str):
        if self.counts_by_window(owner):
            days = self.anonymous_window_s / 86400
            message = (f"callers without an account may send {self.anonymous_limit} images per {days:g} days "
                       "together, and that many are waiting; sign in, or try again later")
        else:
            message = f"this account may hold {self.limit} images; delete some before sending more"
        return error_response(429, "QUOTA_EXCEEDED", message, {"Retry-After": str(QUOTA_RETRY_AFTER_S)})

    def reserve(self):
        """before_request: count the upload's images, or answer 429 when they do not fit.

        The store out of reach raises Unavailable, which the app answers 503 (web_tier/errors.py).
        """
        if request.endpoint not in UPLOAD_ENDPOINTS:
            return None
        count = images_in_request()
        if not count:
            return None
        owner = owner_of_request()
        if not self.limit and not self.counts_by_window(owner):
            return None
        if not self._fits(owner, count):
            log.info("quota: %s is at its limit, refused %s more images", owner, count)
            return self._refusal(owner)
        g.quota_reserved, g.quota_owner, g.quota_accepted = count, owner, 0
        return None

    def settle(self, _exc: BaseException | None = None) -> None:
        """teardown_request: give back what was reserved and not accepted (refused, failed, or an error)."""
        unused = g.pop("quota_reserved", 0) - g.pop("quota_accepted", 0)
        owner = g.pop("quota_owner", None)
        if owner and unused > 0:
            try:
                if self.counts_by_window(owner):
                    self.table.give_back(ANONYMOUS_IMAGES, unused)
                else:
                    self.table.release(owner, unused)
            except SightfleetError as exc:
                log.error("quota: could not give back %s unused images of %s: %s", unused, owner, exc)


class CountingSubmitter:
    """The app's Submitter, counting in the request what it accepts (so the quota keeps only those)."""

    def __init__(self, submitter):
        self._submitter = submitter

    def submit(self, *args, **kwargs) -> dict:
        result = self._submitter.submit(*args, **kwargs)
        if "quota_accepted" in g:
            g.quota_accepted += 1
        return result

    def __getattr__(self, name: str):
        return getattr(self._submitter, name)


def release(owner: str, count: int = 1) -> None:
    """Count count fewer images for owner (call it when images are deleted); raises Unavailable."""
    quota: Quota | None = current_app.extensions["limits"]["quota"]
    if quota is not None and count > 0 and not quota.counts_by_window(owner):
        quota.table.release(owner, count)


def _rate_limited(exc: RateLimitExceeded):
    """429 with Retry-After: the seconds until this caller's window ends."""
    limiter: Limiter = current_app.extensions["limits"]["limiter"]
    try:
        wait_s = math.ceil(max(1.0, limiter.current_limit.window[0] - time.time()))
    except Exception as error:  # noqa: BLE001 - the store went away between the hit and this read
        log.warning("rate limit: cannot read when the window ends (%s); answering a minute", error)
        wait_s = 60
    return error_response(429, "RATE_LIMITED", f"the rate limit of {exc.limit.limit} requests is used up; try again in {wait_s} s",
                          {"Retry-After": str(wait_s)})


def install(app: Flask, table: LimitsTable) -> None:
    """Rate-limit every request and hold each owner to the quota, as the app's settings say."""
    settings = app.extensions["sightfleet"].settings
    anonymous = settings.anonymous_rate_limit.strip()
    limits = {"limiter": None, "quota": None, "table": table,   # the table: the sign-in guard counts there too
              "anonymous": AddressCounter(table, anonymous, "anonymous") if anonymous else None}
    app.extensions["limits"] = limits
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
        limits["limiter"] = limiter
    if settings.quota_images or settings.anonymous_quota_images:
        # The quota fails closed: it takes the table's ordinary retries rather than the counters' one try.
        quota = Quota(LimitsTable(settings), settings.quota_images, settings.anonymous_quota_images,
                      settings.anonymous_expiry_days * 86400)
        app.extensions["submitter"] = CountingSubmitter(app.extensions["submitter"])
        app.before_request(quota.reserve)
        app.teardown_request(quota.settle)
        limits["quota"] = quota
    if settings.quota_images:
        # The quota fails closed (no upload is accepted uncounted), so without its table the web tier
        # cannot take uploads: health says so. The rate limits and the sign-in guard fail open instead.
        app.extensions["health"].also_check("limits", table.check)
