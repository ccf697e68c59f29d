"""The JSON API: submit images, read one result, list results."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from sightfleet.contracts import STATUSES, is_image_id
from sightfleet.errors import NotFound
from web_tier.errors import error_response
from web_tier.present import decode_cursor, encode_cursor, present
from web_tier.services import resources, submitter
from web_tier.submit import Rejected, Upload, wait_for

bp = Blueprint("api", __name__, url_prefix="/api")
MAX_WAIT_S = 60
RAW_TYPES = ("image/jpeg", "image/png")


def uploads_from_request() -> list[Upload]:
    """Files from multipart `file` parts, or one raw image body."""
    album = request.args.get("album") or request.form.get("album")
    if request.mimetype in RAW_TYPES:
        return [Upload(request.get_data(), request.args.get("filename", "upload"), album)]
    files = request.files.getlist("file")
    if not files:
        raise Rejected(400, "NO_FILE", "send multipart `file` parts or a raw image/jpeg or image/png body")
    return [Upload(f.read(), f.filename or "upload", album) for f in files]


def wait_seconds() -> float:
    try:
        return max(0.0, min(float(request.args.get("wait", 0)), MAX_WAIT_S))
    except ValueError as exc:
        raise Rejected(400, "BAD_WAIT", "wait must be a number of seconds") from exc


@bp.post("/images")
def submit_images():
    uploads = uploads_from_request()
    wait_s = wait_seconds()
    for upload in uploads:  # check all first, so one bad file does not leave others queued
        submitter().check(upload)
    accepted = [submitter().submit(upload) for upload in uploads]
    if wait_s:
        done = wait_for(resources().results, [r["id"] for r in accepted], wait_s)
        if done is not None:
            return jsonify({"images": [present(r) for r in done]}), 200
    return jsonify({"images": [present(r) for r in accepted]}), 202


@bp.get("/images/<image_id>")
def get_image(image_id: str):
    if not is_image_id(image_id):
        return error_response(404, "NOT_FOUND", "no such image")
    return jsonify(present(resources().results.get(image_id)))


@bp.get("/images")
def list_images():
    status = request.args.get("status") or None
    if status and status not in STATUSES:
        return error_response(400, "BAD_STATUS", f"status must be one of {', '.join(STATUSES)}")
    try:
        limit = max(1, min(int(request.args.get("limit", 20)), 100))
        cursor = decode_cursor(request.args.get("cursor"))
    except ValueError as exc:
        return error_response(400, "BAD_QUERY", str(exc))
    items, next_key = resources().results.list(request.args.get("album") or None, status, limit, cursor)
    return jsonify({"images": [present(r) for r in items], "next_cursor": encode_cursor(next_key)})


@bp.errorhandler(NotFound)
def not_found(exc):
    return error_response(404, "NOT_FOUND", "no such image")
