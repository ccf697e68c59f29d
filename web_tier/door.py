"""The door: what every request meets first, before authentication, CSRF, routing's 404 and 405, or any view.

- A body limit per endpoint, set before anything reads the body: a declared length over it is refused
  (413) without reading a byte, and an undeclared (chunked) body stops being read there; routes that
  take no images (forms and the rest) refuse an undeclared one outright (411). A few KB for
  forms, one image for `POST /` and a raw upload, ten images for a multipart upload; DEFAULT_BODY_BYTES
  for every other route, and for requests that match none.
- A count per remote address (SIGHTFLEET_ADDRESS_RATE_LIMIT), so that refusals (a bad key, a missing
  CSRF token, a 404, a 405) cost a flood as much as answers do. Counted in the limits table, shared by
  every process; when the table is out of reach each process counts on its own in memory (fails open,
  logged), as the per-caller limits do (web_tier/limits.py).
"""
from __future__ import annotations

import logging

from flask import Flask, request

from sightfleet.config import Settings
from web_tier.errors import refusal
from web_tier.limits import UPLOAD_ENDPOINTS, too_many
from web_tier.rekognition import ENDPOINT as REKOGNITION_CALL
from web_tier.rekognition.protocol import MAX_BODY_BYTES as REKOGNITION_BODY_BYTES
from web_tier.submit import MAX_IMAGES_PER_REQUEST
from web_tier.services import services

log = logging.getLogger(__name__)
FORM_BODY_BYTES = 8 * 1024        # sign-in, sign-out, key, link, password and delete forms
DEFAULT_BODY_BYTES = 64 * 1024    # JSON bodies of the admin API, and anything no route takes
# A multipart envelope around a file: boundaries, part headers, the album and CSRF fields.
ENVELOPE_BYTES = 64 * 1024
FORM_ENDPOINTS = frozenset({
    "signin.submit", "signin.redeem_link", "signin.signout", "signin.create_key", "signin.revoke_key",
    "account.change_password", "pages.delete_image_page", "pages.delete_album_page",
    "signin.create_access_key", "webhooks.page_create", "webhooks.page_action"})


def body_limit(endpoint: str | None, mimetype: str, settings: Settings) -> int:
    """The most bytes a request to this endpoint may carry (a pure function of the route and settings)."""
    one_image = settings.max_upload_bytes
    if endpoint == "api.submit_images" and mimetype.startswith("image/"):
        # One byte more than the limit: werkzeug refuses any read at its limit, and an image of exactly
        # the limit is allowed; the submitter's check refuses the rest with its own message.
        return one_image + 1
    if endpoint in ("api.submit_images", "pages.upload"):
        return one_image * MAX_IMAGES_PER_REQUEST + 1024 * 1024
    if endpoint == "course.classify":
        return one_image + ENVELOPE_BYTES
    if endpoint == REKOGNITION_CALL:
        return REKOGNITION_BODY_BYTES   # one 5 MB image in base64, and the rest of the call
    return FORM_BODY_BYTES if endpoint in FORM_ENDPOINTS else DEFAULT_BODY_BYTES


def _chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def check_door():
    """before_request, the first: the body's bound, then the address's count."""
    settings = services().settings
    limit = body_limit(request.endpoint, request.mimetype, settings)
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        log.info("%s %s: refused a body of %s bytes (limit %s) unread", request.method, request.path,
                 request.content_length, limit)
        return refusal(413, "TOO_LARGE", f"the request is larger than allowed here: at most {limit:,} bytes")
    if request.content_length is None and request.endpoint not in UPLOAD_ENDPOINTS and _chunked():
        # A form is sent with its length by every browser; an undeclared one here is not worth parsing.
        return refusal(411, "LENGTH_REQUIRED", "send this request's body with a Content-Length")
    counter = services().door_counter
    wait_s = counter.wait_s(request.remote_addr or "unknown") if counter else 0
    return too_many("this address", wait_s) if wait_s else None


def install(app: Flask) -> None:
    """Put the door in front of every other before_request (call before anything else registers one)."""
    app.before_request_funcs.setdefault(None, []).insert(0, check_door)
