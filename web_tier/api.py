"""The JSON API: submit images, read one result, list results."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from sightfleet.contracts import STATUSES, is_image_id
from sightfleet.errors import Unavailable
from sightfleet.formats import ACCEPTED
from web_tier.csrf import has_csrf_cookie, require_csrf
from web_tier.errors import error_response, unavailable_response
from web_tier.present import decode_cursor, encode_cursor, present
from web_tier.services import resources, settings, submitter, waiter
from web_tier.submit import Rejected, Upload, upload_from_part

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")
MAX_WAIT_S = 60
DEFAULT_PAGE = 20
MAX_PAGE = 100


def uploads_from_request() -> list[Upload]:
    """Files from multipart `file` parts, or one raw image body."""
    album = request.args.get("album") or request.form.get("album")
    if request.mimetype in ACCEPTED.values():
        # One image per raw body: refuse anything over the per-image limit before reading it.
        request.max_content_length = settings().max_upload_bytes
        return [Upload(request.get_data(), request.args.get("filename", "upload"), album)]
    files = request.files.getlist("file")
    if not files:
        raise Rejected(400, "NO_FILE", "send multipart `file` parts or a raw image/jpeg or image/png body")
    return [upload_from_part(f, album) for f in files]


def wait_seconds() -> float:
    try:
        return max(0.0, min(float(request.args.get("wait", 0)), MAX_WAIT_S))
    except ValueError as exc:
        raise Rejected(400, "BAD_WAIT", f"wait must be a number of seconds (at most {MAX_WAIT_S})") from exc


@bp.post("/images")
def submit_images():
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
    album = request.args.get("album") or None
    status = (request.args.get("status") or "").upper() or None
    if status and status not in STATUSES:
        raise Rejected(400, "BAD_STATUS", f"status must be one of {', '.join(STATUSES)}")
    try:
        limit = max(1, min(int(request.args.get("limit", DEFAULT_PAGE)), MAX_PAGE))
    except ValueError as exc:
        raise Rejected(400, "BAD_LIMIT", f"limit must be a whole number from 1 to {MAX_PAGE}") from exc
    try:
        cursor = decode_cursor(request.args.get("cursor"), album)
    except ValueError as exc:
        raise Rejected(400, "BAD_CURSOR", str(exc)) from exc
    return album, status, limit, cursor


@bp.get("/images")
def list_images():
    items, next_key = resources().results.page(*listing_query())
    return jsonify({"images": [present(r) for r in items], "next_cursor": encode_cursor(next_key)})
