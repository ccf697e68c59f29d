"""The JSON API: submit images, read, list and delete results; each caller sees only its own (admins all)."""
from __future__ import annotations

import logging
from dataclasses import replace

from flask import Blueprint, jsonify, request

from sightfleet.contracts import FINAL_STATUSES, clean_album
from sightfleet.errors import SightfleetError, Unavailable
from sightfleet.findterms import is_held
from sightfleet.webhooks import WebhookError
from web_tier.errors import unavailable_response
from web_tier.features import upload_features
from web_tier.labels import search_owner, search_page, search_start
from web_tier.ops_actions import paused_notice
from web_tier.owners import caller, delete_one, delete_owned, listing_owner, shown, stored_row, visible_result
from web_tier.present import decode_cursor, encode_cursor, present
from web_tier.query import album_filter, label_filters, number, search_term, status_filter
from web_tier.services import albums, bounded_wait, resources, settings, submitter
from web_tier.waiting import WaitRefused
from web_tier.reservations import reserve_images
from web_tier.submit import Rejected, Upload, check_part_count, uploads_from_parts
from web_tier.webhooks.views import webhooks

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
    """Files from multipart `file` parts, or one raw image body, owned by the caller, with the label filters
    and the features to run (both checked before any image is)."""
    album, owner = request.args.get("album"), caller().owner
    features = upload_features()
    if is_raw_upload():
        reserve_images(owner, 1)   # counted without reading the body
        return [Upload(request.get_data(), request.args.get("filename"), album, owner,
                       label_filters().to_dict(), features)]
    if request.mimetype != FORM_TYPE and (request.content_length or request.mimetype):
        raise Rejected(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"a body of type {request.mimetype or '(none)'} is not accepted; send "
                       "multipart/form-data `file` parts or a raw image/jpeg or image/png body")
    files = request.files.getlist("file")
    if not files:
        raise Rejected(400, "NO_FILE", "send multipart `file` parts (with UTF-8 part headers) or a raw "
                                       "image/jpeg or image/png body")
    check_part_count(files)
    reserve_images(owner, len(files))
    filters = label_filters().to_dict()
    return [replace(upload, filters=filters, features=features)
            for upload in uploads_from_parts(files, album or request.form.get("album"), owner, submitter().max_bytes)]


def callback_noter():
    """For an upload that names `callback_url`: what remembers it for each job before the job is queued."""
    url = request.args.get("callback_url") or (request.form.get("callback_url") if request.mimetype == FORM_TYPE
                                               else None)
    if not url:
        return None
    owner = caller().owner
    try:
        url = webhooks().check_callback(owner, url)
    except WebhookError as exc:
        raise Rejected(400, "BAD_CALLBACK", str(exc)) from None
    return lambda job: webhooks().note_callback(job.id, owner, url)


def wait_seconds() -> float:
    return number("wait", "BAD_WAIT", 0, MAX_WAIT_S, 0)


@bp.post("/images")
def submit_images():
    # The body's bound (one image for a raw body) was set before anything read it: web_tier/door.py.
    wait_s = wait_seconds()
    uploads = uploads_from_request()
    # Check all first, so one bad file does not leave the others queued.
    checked = [submitter().check(upload) for upload in uploads]
    before_send = callback_noter()
    accepted = []
    try:
        for item in checked:
            accepted.append(submitter().submit(item, before_send=before_send))
    except Unavailable as exc:
        if not accepted:
            raise
        # Each accepted image is complete; say which, so a client resends only the rest.
        log.warning("accepted %s of %s images before: %s", len(accepted), len(uploads), exc)
        return unavailable_response(f"queued {len(accepted)} of {len(uploads)} images, then storage or "
                                    "queue became unreachable; resend the others shortly",
                                    images=[present(r) for r in accepted])
    notice = paused_notice()
    if notice:   # nothing will finish while paused: no waiting, and the answer says why
        return jsonify({"images": [present(r) for r in accepted], "processing": "paused", "notice": notice}), 202
    if wait_s:
        # An image deleted while its request waited wakes it too; then the answer is the accepted list, as
        # it is when the caller holds its share of waits already (202: poll each status_url).
        done = _wait_if_allowed([r["id"] for r in accepted], wait_s)
        if done is not None and all(shown(r) for r in done):
            return jsonify({"images": [present(r) for r in done]}), 200
    return jsonify({"images": [present(r) for r in accepted]}), 202


def _wait_if_allowed(image_ids: list[str], wait_s: float) -> list[dict] | None:
    """The settled rows, or None when they did not settle in time or the caller may not wait now."""
    try:
        return bounded_wait(image_ids, wait_s)
    except WaitRefused:
        return None


@bp.get("/images/<image_id>")
def get_image(image_id: str):
    """One result; with `?wait=N`, held up to N s until it is final."""
    wait_s, filters = wait_seconds(), label_filters()
    result = visible_result(image_id)
    if wait_s and result["status"] not in FINAL_STATUSES:
        try:
            bounded_wait([image_id], wait_s)
            result = visible_result(image_id)   # read again, and checked again: it may have been deleted
        except WaitRefused:
            pass   # the caller holds its share of waits already: the result as it is now
    return jsonify(present(result, filters))


@bp.delete("/images/<image_id>")
def delete_image_route(image_id: str):
    """Delete an image and all it made (see sightfleet/deletion.py); 204, also for a retry of a delete."""
    doc = stored_row(image_id)
    try:
        delete_one(doc)
    except SightfleetError as exc:
        log.warning("deleting %s stopped part-way: %s", image_id, exc)
        return unavailable_response("the delete did not finish (storage unreachable); send the DELETE again "
                                    "to finish it")
    return "", 204


def delete_album(owner: str, album: str) -> tuple[int, str | None]:
    """Delete every image of one owner's album, page by page; (images deleted, why it stopped or None)."""
    deleted, cursor = 0, None
    while True:
        items, cursor = resources().results.page(album, None, MAX_PAGE, cursor, owner)
        for doc in items:
            try:
                delete_owned(doc)
            except SightfleetError as exc:
                log.warning("deleting album %r of %s stopped after %s images: %s", album, owner, deleted, exc)
                return deleted, str(exc)
            deleted += 1
        if cursor is None:
            albums().forget(owner, album)
            return deleted, None


@bp.delete("/albums/<name>")
def delete_album_route(name: str):
    """Delete the caller's album (an admin's: `?owner=`) with every photo in it; 200 with the count."""
    owner = listing_owner()
    if owner is None:
        raise Rejected(400, "BAD_OWNER", "name the album's owner: ?owner=<id>")
    try:
        album = clean_album(name)
    except ValueError as exc:
        raise Rejected(400, "BAD_ALBUM", str(exc)) from exc
    deleted, problem = delete_album(owner, album)
    if problem:
        return unavailable_response(f"deleted {deleted} photos of the album, then storage became unreachable; "
                                    "send the DELETE again to finish", deleted=deleted)
    return jsonify({"album": album, "deleted": deleted}), 200


def page_limit() -> int:
    return int(number("limit", "BAD_LIMIT", 1, MAX_PAGE, DEFAULT_PAGE, whole=True))


def listing_query() -> tuple[str | None, str | None, int, dict | None, str | None]:
    """album, status, limit, cursor and owner of a listing, checked; shared with the gallery page."""
    owner = listing_owner()
    album, status = album_filter(), status_filter()
    limit = page_limit()
    try:
        cursor = decode_cursor(request.args.get("cursor"), album, owner)
    except ValueError as exc:
        raise Rejected(400, "BAD_CURSOR", str(exc)) from exc
    return album, status, limit, cursor, owner


def listed_images() -> tuple[list[dict], dict | None]:
    """The page a listing asks for: by a search term (label, text, faces, color, held; with album, status and,
    for a label, MinConfidence) or by album and status. A photo moderation holds is in no listing but an
    admin's and its owner's `held` search (the index has no other entry of it)."""
    term = search_term()
    if term is None:
        items, next_key = resources().results.page(*listing_query())
        return [doc for doc in items if caller().admin or not is_held(doc)], next_key
    owner, album, status, limit = search_owner(), album_filter(), status_filter(), page_limit()
    start = search_start(request.args.get("cursor"), owner, term.key, album)
    floor = label_filters().MinConfidence if term.param == "label" else 0.0
    if floor is None:
        floor = settings().min_confidence
    return search_page(owner, term.key, album, status, floor, limit, start, held=term.param == "held")


@bp.get("/images")
def list_images():
    items, next_key = listed_images()
    filters = label_filters()
    return jsonify({"images": [present(r, filters) for r in items], "next_cursor": encode_cursor(next_key)})
