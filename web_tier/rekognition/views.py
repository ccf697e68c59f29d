"""The one route of Rekognition's JSON protocol: read the call, send its photo through the fleet, answer.

Every operation is a job like an upload's, naming exactly the features (worker stages) it needs, plus
moderation when the stack moderates every photo (sightfleet/features.py effective_features).
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Callable

from flask import Blueprint, Flask, current_app, g, request

from sightfleet.aws.calls import PendingCalls
from sightfleet.contracts import SUCCEEDED
from sightfleet.features import effective_features
from sightfleet.errors import NotFound, SightfleetError
from web_tier.auth import accounts
from web_tier.owners import delete_owned
from web_tier.rekognition import ROUTE, Dispatch, aws_answer, aws_error_answer
from web_tier.ops_actions import paused_notice
from web_tier.rekognition.calls import API_ALBUM, PENDING_TTL_S, CallRefused, Calls, clean_up_when_unclaimed
from web_tier.rekognition.protocol import AwsError, ImageCall, as_aws_error, failed_as_aws_error, operation_of
from web_tier.rekognition.questions import OPERATIONS
from web_tier.reservations import reserve_images
from web_tier.services import bounded_wait, resources, services, settings, submitter, waiter
from web_tier.submit import Rejected, Upload

log = logging.getLogger(__name__)
bp = Blueprint("rekognition", __name__)
RETRY_DELETE_S = 60


@bp.errorhandler(AwsError)
def aws_error(exc: AwsError):
    return aws_error_answer(exc)


@bp.errorhandler(Rejected)
def rejected(exc: Rejected):
    return aws_error_answer(as_aws_error(exc.status, exc.code, exc.message))


def calls() -> Calls:
    shared = services()
    if shared.rekognition_calls is None:
        # Waits count against the caller's share, as every waiting route's (web_tier/waiting.py).
        shared.rekognition_calls = Calls(submitter().submit, bounded_wait, settings().rekognition_wait_s,
                                         PendingCalls(settings(), PENDING_TTL_S))
    return shared.rekognition_calls


@bp.post(ROUTE)
def call():
    name = operation_of(request.headers.get("X-Amz-Target"))   # only the operations answered get past this
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError:
        raise AwsError("SerializationException", "the body is not valid JSON") from None
    operation = OPERATIONS[name]
    asked = operation.parse(body)
    features = effective_features(asked.features, None, settings().default_features, settings().moderation)
    reserve_images(g.principal.owner, 1)   # one image a call (a retry joining its job gives it back)
    upload = Upload(_image_of(asked), f"rekognition-{uuid.uuid4().hex[:8]}", API_ALBUM, g.principal.owner,
                    features=features)
    result = _final_result(upload)
    _let_go(result)
    if result["status"] != SUCCEEDED:
        raise failed_as_aws_error(result.get("error"))
    log.info("%s for %s answered from %s", name, g.principal.name, result["id"])
    return aws_answer(operation.answer(result, asked))


def _final_result(upload: Upload) -> dict:
    """The call's final result, through the fleet; a retryable ThrottlingException when it cannot come now.

    In every such case the photo's job stands (queued, or under way) and a retry of the call joins it.
    """
    notice = paused_notice()
    if notice:
        _clean_up_later(upload, calls().send_only(upload))
        raise AwsError("ThrottlingException", f"{notice}; retry later (the photo joins the job already sent)")
    try:
        image_id, result = calls().answer(upload)
    except CallRefused as refused:
        _clean_up_later(upload, refused.image_id)
        raise AwsError("ThrottlingException", "this account has as many calls waiting as it may; retry shortly "
                       "(the photo joins the job already sent)") from None
    if result is None:
        _clean_up_later(upload, image_id)
        raise AwsError("ThrottlingException", f"the fleet did not answer within {settings().rekognition_wait_s:g} s "
                       "(it may be starting); retry: the same photo joins the job already sent")
    return result


def _image_of(detect: ImageCall) -> bytes:
    """The call's image: its bytes, or one of the caller's own originals in this stack's input bucket."""
    if detect.image_bytes is not None:
        return detect.image_bytes
    inputs = resources().inputs
    if detect.s3_bucket != inputs.name or not detect.s3_key.startswith(f"originals/{g.principal.owner}/"):
        raise AwsError("AccessDeniedException", "Image.S3Object may name only your own originals in this stack's "
                       f"input bucket ({inputs.name}, keys originals/{g.principal.owner}/...)")
    try:
        return inputs.get(detect.s3_key)
    except NotFound:
        raise AwsError("InvalidS3ObjectException", f"no object {detect.s3_key!r} in {inputs.name}") from None


def _keeps_api_images() -> bool:
    return bool(accounts().get(g.principal.name).get("keep_api_images"))


def _let_go(result: dict) -> None:
    """Delete the call's photo now that it is answered (Rekognition keeps nothing), unless the account keeps them.

    The answer does not wait on a failed deletion: the photo goes in the background, a minute later.
    """
    if _keeps_api_images():
        return
    try:
        delete_owned(result)
    except SightfleetError as exc:
        log.warning("the photo %s of an answered call is not deleted yet (%s); trying again later", result["id"], exc)
        threading.Timer(RETRY_DELETE_S, _in_app_context(delete_owned), (result,)).start()


def _in_app_context(act: Callable[[dict], None]) -> Callable[[dict], None]:
    """act, run in this app's context from a thread of its own, with whatever stops it logged."""
    app = current_app._get_current_object()

    def run(doc: dict) -> None:
        with app.app_context():
            try:
                act(doc)
            except Exception:  # noqa: BLE001 - a thread of its own
                log.exception("could not delete %s, the photo of a Rekognition call", doc["id"])
    return run


def _clean_up_later(upload: Upload, image_id: str) -> None:
    """Delete the photo of a call nobody came back for, once its job ends and its retry window passes."""
    if not _keeps_api_images():
        clean_up_when_unclaimed(calls().pending, upload, image_id, waiter().wait, _in_app_context(delete_owned))


def install(app: Flask) -> None:
    """Route Rekognition calls (POST / with their X-Amz-Target) to this blueprint."""
    app.wsgi_app = Dispatch(app.wsgi_app)
    app.register_blueprint(bp)
