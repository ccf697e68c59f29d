"""The CSE546-compatible endpoint: POST / with `myfile` or `inputFile`, answered `name:label`."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from sightfleet.contracts import SUCCEEDED, label_answer
from web_tier.errors import RETRY_HEADERS, error_response
from web_tier.ops_actions import paused_notice
from web_tier.owners import caller
from web_tier.present import present
from web_tier.reservations import reserve_images
from web_tier.services import bounded_wait, submitter
from web_tier.submit import COURSE_FIELDS, Rejected, upload_from_part
from web_tier.waiting import WaitRefused

bp = Blueprint("course", __name__)
# The course generator waits as long as a request takes; the bound stays below gunicorn's timeout.
WAIT_S = 120


@bp.post("/")
def classify():
    part = next((request.files[f] for f in COURSE_FIELDS if f in request.files), None)
    if part is None:
        raise Rejected(400, "NO_FILE", "send the image as multipart field `myfile` or `inputFile`")
    # Filed under the caller: authentication makes an uncredentialed course generator the anonymous owner.
    owner = caller().owner
    reserve_images(owner, 1)
    upload = upload_from_part(part, request.form.get("album"), owner, submitter().max_bytes)
    accepted = submitter().submit(upload)
    notice = paused_notice()
    if notice:
        return error_response(503, "PROCESSING_PAUSED", f"{notice}; poll /api/images/{accepted['id']}", RETRY_HEADERS)
    try:
        done = bounded_wait([accepted["id"]], WAIT_S)
    except WaitRefused:
        # This caller already holds its share of waiting threads: the image is queued, poll for it.
        shown = present(accepted)
        return jsonify(shown), 202, {"Location": shown["status_url"]}
    if done is None:
        return error_response(504, "TIMEOUT", f"no result within {WAIT_S} s; poll /api/images/{accepted['id']}")
    result = done[0]
    if result["status"] != SUCCEEDED:
        error = result.get("error") or {}
        return error_response(422, error.get("code", "FAILED"), error.get("message", "recognition failed"))
    return Response(label_answer(result["filename"], result["top_label"]), mimetype="text/plain")
