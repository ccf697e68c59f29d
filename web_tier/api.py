"""The JSON API: submit images, read one result, list results."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from sightfleet.contracts import is_image_id
from sightfleet.errors import Unavailable
from web_tier.csrf import has_csrf_cookie, require_csrf
from web_tier.errors import error_response, unavailable_response
from web_tier.present import decode_cursor, encode_cursor, present
from web_tier.query import album_filter, number, status_filter
from web_tier.services import resources, settings, submitter, waiter
from web_tier.submit import Rejected, Upload, uploads_from_parts

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")
MAX_WAIT_S = 60
DEFAULT_PAGE = 20
MAX_PAGE = 100
FORM_TYPE = "multipart/form-data"


def is_raw_upload() -> bool:
    """True for a body that is the image itself (any image/* type: its first bytes decide the format)."""
    return request.mimetype.startswith("image/")


def uploads_from_request() -> list[Upload]:
    """Files from multipart `file` parts, or one raw image body."""
    album = request.args.get("album")
    if is_raw_upload():
        return [Upload(request.get_data(), request.args.get("filename"), album)]
    if request.mimetype != FORM_TYPE and (request.content_length or request.mimetype):
        raise Rejected(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"a body of type {request.mimetype or '(none)'} is not accepted; send "
                       "multipart/form-data `file` parts or a raw image/jpeg or image/png body")
    files = request.files.getlist("file")
    if not files:
        raise Rejected(400, "NO_FILE", "send multipart `file` parts (with UTF-8 part headers) or a raw "
                                       "image/jpeg or image/png body")
    return uploads_from_parts(files, album or request.form.get("album"))


def wait_seconds() -> float:
    return number("wait", "BAD_WAIT", 0, MAX_WAIT_S, 0)


@bp.post("/images")
def submit_images():
    if is_raw_upload():
        # One image per raw body: refuse a declared length over the limit before reading a byte, and
        # stop reading an undeclared (chunked) one there. One byte more than the limit, because werkzeug
        # refuses any read at its limit and a body of exactly the limit is allowed; check() refuses more.
        request.max_content_length = settings().max_upload_bytes + 1
    if has_csrf_cookie():  # a browser with our cookie (the upload page): it must prove it is our page
        require_csrf()
    wait_s = wait_seconds()
    uploads = uploads_from_request()
    # Check all first, so one bad file does not leave the others queued.
    checked = [submitter().check(upload) for upload in uploads]
    accepted = []
    try:
        for item in checked:
            accepted.append(submitter().submit(item))
    except Unavailable as exc:
        if not accepted:
            raise
        # Each accepted image is complete; say which, so a client resends only the rest.
        log.warning("accepted %s of %s images before: %s", len(accepted), len(uploads), exc)
        return unavailable_response(f"queued {len(accepted)} of {len(uploads)} images, then storage or "
                                    "queue became unreachable; resend the others shortly",
                                    images=[present(r) for r in accepted])
    if wait_s:
        done = waiter().wait([r["id"] for r in accepted], wait_s)
        if done is not None:
            return jsonify({"images": [present(r) for r in done]}), 200
    return jsonify({"images": [present(r) for r in accepted]}), 202


@bp.get("/images/<image_id>")
def get_image(image_id: str):
    if not is_image_id(image_id):
        return error_response(404, "NOT_FOUND", "no such image")
    return jsonify(present(resources().results.get(image_id)))


def listing_query() -> tuple[str | None, str | None, int, dict | None]:
    """album, status, limit and cursor of a listing, checked; shared with the gallery page."""
    album, status = album_filter(), status_filter()
    limit = int(number("limit", "BAD_LIMIT", 1, MAX_PAGE, DEFAULT_PAGE, whole=True))
    try:
        cursor = decode_cursor(request.args.get("cursor"), album)
    except ValueError as exc:
        raise Rejected(400, "BAD_CURSOR", str(exc)) from exc
    return album, status, limit, cursor


@bp.get("/images")
def list_images():
    items, next_key = resources().results.page(*listing_query())
    return jsonify({"images": [present(r) for r in items], "next_cursor": encode_cursor(next_key)})
