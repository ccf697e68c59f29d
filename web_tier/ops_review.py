"""Moderation's review list and release under /api/ops/ (admins only, with the ops blueprint; audited).

`GET /api/ops/review`: the photos moderation holds, every owner's, newest first (the /ops panel polls it).
`POST /api/ops/review/release` {"image_id"}: an admin releases one (sightfleet/review.py); from then on it
is in its owner's galleries and searches like any photo.
"""
from __future__ import annotations

from flask import jsonify, request, url_for

from sightfleet import review
from sightfleet.contracts import is_image_id
from sightfleet.errors import ConditionFailed
from sightfleet.findterms import REVIEW_OWNER, is_held
from web_tier.errors import error_response
from web_tier.ops_actions import BadBody, bad_request, control, json_body, who
from web_tier.present import decode_search_cursor, encode_cursor, present
from web_tier.query import number
from web_tier.services import resources
from web_tier.submit import Rejected

MAX_PAGE = 50


def review_list():
    """One page of held photos with their moderation labels, and how many wait in all."""
    limit = int(number("limit", "BAD_LIMIT", 1, MAX_PAGE, 20, whole=True))
    try:
        start = decode_search_cursor(request.args.get("cursor"), REVIEW_OWNER, review.REVIEW_KEY, None)
    except ValueError as exc:
        raise Rejected(400, "BAD_CURSOR", str(exc)) from exc
    entries, next_key = review.held_page(resources().labels, limit, start)
    rows = resources().results.get_many([e.image_id for e in entries])
    held = [_shown(doc) for doc in sorted(rows, key=lambda d: d["submitted_at"], reverse=True) if is_held(doc)]
    return jsonify({"waiting": review.waiting_count(resources().labels), "images": held,
                    "next_cursor": encode_cursor(next_key)})


def _shown(doc: dict) -> dict:
    """What the review panel shows of one held photo."""
    shown = present(doc)
    return {name: shown.get(name) for name in ("id", "owner", "album", "filename", "submitted_at",
                                               "moderation_labels", "review", "page_url", "thumbnail_url")}


def release():
    """Release one held photo (audited); 404 for no such photo, 409 for one that is not held."""
    try:
        image_id = json_body({"image_id": (str,)}).get("image_id")
        if not image_id or not is_image_id(image_id):
            raise BadBody("send {\"image_id\": \"<the photo's id>\"}")
    except BadBody as exc:
        return bad_request(exc)
    try:
        doc = review.release(resources(), image_id, who())
    except review.NotHeld as exc:
        return error_response(409, "NOT_HELD", str(exc))
    except ConditionFailed:
        return error_response(409, "CHANGED", "the photo changed meanwhile (reprocessed or deleted); look again")
    control().audit(who(), "release", 1, {"image_id": image_id, "owner": doc.get("owner")})
    return jsonify({"image_id": image_id, "review": doc["review"],
                    "page_url": url_for("pages.image_page", image_id=image_id)})


def register(bp) -> None:
    """Add the review routes to the ops blueprint (admin-only with it)."""
    bp.add_url_rule("/api/ops/review", "review", review_list, methods=["GET"])
    bp.add_url_rule("/api/ops/review/release", "release", release, methods=["POST"])
