"""Admins only: `POST /api/admin/reprocess` requeues one page of stored photos; `GET` shows the runs' progress.

Each POST does at most `limit` photos (100) of the selection and answers with the run's counts and
the cursor to send next (null when the selection is done), so no request runs long and a stopped
client resumes with its last cursor. `python -m app_tier.reprocess` runs the same steps to the end.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from sightfleet.contracts import is_owner
from sightfleet.reprocessing import REPROCESS_KIND, Progress, load_progress, run_page
from web_tier.present import decode_cursor, encode_cursor
from web_tier.query import album_filter, number
from web_tier.services import resources
from web_tier.submit import Rejected

bp = Blueprint("reprocess", __name__, url_prefix="/api/admin")
MAX_PAGE = 100
MAX_VERSION_CHARS = 64
RECENT_RUNS = 20


def _selection() -> Progress:
    """The run the request names (owner, album, older_than_version), resumed at the request's cursor."""
    owner = request.args.get("owner", "").strip() or None
    if owner is not None and not is_owner(owner):
        raise Rejected(400, "BAD_OWNER", "owner must be an account id (leave it out for every owner)")
    version = request.args.get("older_than_version", "").strip() or None
    if version is not None and (len(version) > MAX_VERSION_CHARS or not version.isprintable()):
        raise Rejected(400, "BAD_VERSION", f"older_than_version is a version of at most {MAX_VERSION_CHARS} "
                                           "printable characters")
    album = album_filter()
    progress = load_progress(resources().fleet_log, Progress.for_selection(owner, album, version))
    if request.args.get("cursor"):   # else the recorded run goes on where it stopped
        try:
            progress.cursor = decode_cursor(request.args["cursor"], album, owner)
        except ValueError as exc:
            raise Rejected(400, "BAD_CURSOR", str(exc)) from exc
    return progress


def _shown(progress: Progress) -> dict:
    return {**progress.to_dict(), "cursor": None, "next_cursor": encode_cursor(progress.cursor)}


@bp.post("/reprocess")
def reprocess():
    """Requeue the next page of the selection (`?owner=&album=&older_than_version=&limit=&cursor=`)."""
    limit = int(number("limit", "BAD_LIMIT", 1, MAX_PAGE, MAX_PAGE, whole=True))
    progress = run_page(resources(), _selection(), limit)
    return jsonify(_shown(progress)), 200


@bp.get("/reprocess")
def reprocess_runs():
    """The progress of recent runs, newest first: photos seen, requeued and skipped, and whether done."""
    runs = sorted(resources().fleet_log.all(REPROCESS_KIND), key=lambda r: r.get("updated_at", ""), reverse=True)
    return jsonify({"runs": [_shown(Progress.from_dict(r)) for r in runs[:RECENT_RUNS]]})
