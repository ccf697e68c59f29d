"""The door: what every request meets first, before authentication, CSRF, routing's 404 and 405, or any view.

- A body limit per endpoint, set before anything reads the body: a declared length over it is refused
  (413) without reading a byte, and an undeclared (chunked) body stops being read there. A few KB for
  forms, one image for `POST /` and a raw upload, ten images for a multipart upload; DEFAULT_BODY_BYTES
  for every other route, and for requests that match none.
- A count per remote address (SIGHTFLEET_ADDRESS_RATE_LIMIT), so that refusals (a bad key, a missing
  CSRF token, a 404, a 405) cost a flood as much as answers do. Counted in the limits table, shared by
  every process; when the table is out of reach each process counts on its own in memory (fails open,
  logged), as the per-caller limits do (web_tier/limits.py).
"""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app, request
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from sightfleet.aws.limits import LimitsTable
from sightfleet.config import Settings
from sightfleet.errors import SightfleetError
from web_tier.errors import refusal
from web_tier.submit import MAX_IMAGES_PER_REQUEST

log = logging.getLogger(__name__)
FORM_BODY_BYTES = 8 * 1024        # sign-in, sign-out, key, link, password and delete forms
DEFAULT_BODY_BYTES = 64 * 1024    # JSON bodies of the admin API, and anything no route takes
# A multipart envelope around a file: boundaries, part headers, the album and CSRF fields.
ENVELOPE_BYTES = 64 * 1024
SHARED_RETRY_S = 10   # how long the address counter counts in memory before it tries the table again
FORM_ENDPOINTS = frozenset({
    "signin.submit", "signin.redeem_link", "signin.signout", "signin.create_key", "signin.revoke_key",
    "account.change_password", "pages.delete_image_page", "pages.delete_album_page"})


def body_limit(endpoint: str | None, mimetype: str, settings: Settings) -> int:
    """The most bytes a request to this endpoint may carry (a pure function of the route and settings)."""
    one_image = settings.max_upload_bytes
    if endpoint == "api.submit_images" and mimetype.startswith("image/"):
        # One byte more than the limit: werkzeug refuses any read at its limit, and an image of exactly
        # the limit is allowed; the submitter's check refuses the rest with its own message.
        return one_image + 1
    if endpoint in ("api.submit_images", "pages.upload"):
        return one_image * MAX_IMAGES_PER_REQUEST + 1024 * 1024
    if endpoint == "cse546.classify":
        return one_image + ENVELOPE_BYTES
    return FORM_BODY_BYTES if endpoint in FORM_ENDPOINTS else DEFAULT_BODY_BYTES


class AddressCounter:
    """Requests per remote address in fixed windows, in the limits table or (while it is out of reach) in memory."""

    def __init__(self, table: LimitsTable, limit: str):
        from web_tier.limits import DynamoStorage   # the storage the per-caller limits count in
        self.limit = parse(limit)
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
        if limiter.hit(self.limit, "door", address):
            return 0
        reset_at = limiter.get_window_stats(self.limit, "door", address).reset_time
        return math.ceil(max(1.0, reset_at - time.time()))


def check_door():
    """before_request, the first: the body's bound, then the address's count."""
    settings = current_app.extensions["sightfleet"].settings
    limit = body_limit(request.endpoint, request.mimetype, settings)
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        log.info("%s %s: refused a body of %s bytes (limit %s) unread", request.method, request.path,
                 request.content_length, limit)
        return refusal(413, "TOO_LARGE", f"this request may carry at most {limit:,} bytes")
    counter: AddressCounter | None = current_app.extensions["door"]
    wait_s = counter.wait_s(request.remote_addr or "unknown") if counter else 0
    if wait_s:
        return refusal(429, "RATE_LIMITED", f"too many requests from this address; try again in {wait_s} s",
                       {"Retry-After": str(wait_s)})
    return None


def install(app: Flask, table: LimitsTable) -> None:
    """Put the door in front of every other before_request (call before anything else registers one)."""
    settings = app.extensions["sightfleet"].settings
    limit = settings.address_rate_limit.strip()
    app.extensions["door"] = AddressCounter(table, limit) if limit else None
    app.before_request_funcs.setdefault(None, []).insert(0, check_door)
