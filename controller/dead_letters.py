"""Dead-letter sweep: a job that exhausted its receives gets a FAILED result users can see.

Messages stay in the dead-letter queue for inspection and redrive; a job whose result is
already final is skipped, so seeing a message again is harmless. Any body at all may be there
(that is how it got there): only one that names a valid image id with a result row marks anything,
or a whole valid job whose row was never written (the web tier sends a job before it writes its row).
"""
from __future__ import annotations

import logging

from sightfleet.contracts import (FINAL_STATUSES, Job, Result, clip, failed_result, is_deleted, job_id_of, job_owner_of,
                                  owner_of, response_message)
from sightfleet.deletion import purge
from sightfleet.errors import ConditionFailed, InvalidJob, NoSuchResult, SightfleetError, Unavailable

log = logging.getLogger(__name__)
CODE = "PROCESSING_FAILED"
INVALID_CODE = "INVALID_JOB"
# Look at each dead letter again only this often; it stays in the queue meanwhile.
RECHECK_S = 600


def sweep(resources, max_messages: int = 10, held: dict | None = None) -> list[str]:
    """Mark the jobs of up to max_messages dead letters FAILED; returns the ids marked.

    held, when given, collects message id -> receipt of what the sweep now hides for RECHECK_S, so that
    a redrive can have them made visible again at once (see release()).
    """
    messages = resources.dead_letters.receive(max_messages, 0, visibility_s=RECHECK_S)
    if held is not None:
        held.update({m.id: m.receipt for m in messages})
    marked = [_mark_guarded(resources, message) for message in messages]
    return [job_id for job_id in marked if job_id]


def release(resources, held: dict) -> int:
    """Make the dead letters the sweep hides visible again (an operator is redriving); returns how many."""
    receipts = list(held.values())
    held.clear()
    if not receipts:
        return 0
    failed = resources.dead_letters.set_visibility(receipts, 0)   # expired receipts are visible already
    return len(receipts) - len(failed)


def _mark_guarded(resources, message) -> str | None:
    try:
        return _mark(resources, message.body)
    except Unavailable as exc:
        # The table is out of reach: look at this one again on the next sweep, not in RECHECK_S.
        log.warning("dead letter %s not marked yet (%s)", message.id, exc)
        try:
            resources.dead_letters.set_visibility([message.receipt], 0)
        except SightfleetError:
            pass  # then it is seen again after RECHECK_S
    except SightfleetError as exc:   # refused for good (Invalid, NotFound): the RECHECK_S look is enough
        log.warning("dead letter %s cannot be marked (%s); left in the queue", message.id, exc)
    except Exception:  # noqa: BLE001 - one strange dead letter must not stop the sweep or the controller
        log.exception("dead letter %s could not be handled; left in the queue", message.id)
    return None


def _mark(resources, body: str) -> str | None:
    """Mark one dead letter's job FAILED; its id, or None when there was nothing to mark."""
    image_id = job_id_of(body)
    if image_id is None:
        log.warning("a dead letter names no image (%s); left for inspection", clip(body, 80))
        return None
    code, reason = _why(resources.settings.max_receive_count, body)
    try:
        current = resources.results.get(image_id)
    except NoSuchResult:
        return _mark_rowless(resources, body, reason) if code == CODE else None
    if is_deleted(current):
        # Deleted by its owner. A worker that died after storing the image's files on the job's last
        # receive left them behind, and no redelivery will come to purge them: this sweep does.
        purge(resources, current)
        return None
    if current.get("status") in FINAL_STATUSES:
        return None
    if job_owner_of(body) != owner_of(current):   # forged or misrouted: another owner's image is not failed by it
        log.warning("dead letter %s names another owner than the image's; left for inspection", image_id)
        return None
    failed = failed_result(current, code, reason)
    try:
        resources.results.finish(failed)
    except ConditionFailed:
        return None  # a worker finished it between the read and this write
    log.warning("job %s dead-lettered (%s); marked FAILED", image_id, code)
    _announce(resources, failed)
    return image_id


def _announce(resources, failed: dict) -> None:
    """Tell the response queue's readers (webhooks: image.failed), as a worker does for the failures it stores."""
    try:
        resources.responses.send(response_message(failed))
    except SightfleetError as exc:
        log.warning("job %s is FAILED, but the response queue could not be told (%s)", failed["id"], exc)


def _mark_rowless(resources, body: str, reason: str) -> str | None:
    """A valid job with no row (its web process died before writing it): write its FAILED row, if still none.

    Only for a job that reads in full: junk with an id-shaped field gets no row, nobody waits for it.
    """
    job = Job.from_message(body)
    try:
        resources.results.create(Result.queued(job).failed(CODE, reason).to_dict())
    except ConditionFailed:
        return None   # written meanwhile
    log.warning("job %s dead-lettered with no result row (%s); written FAILED", job.id, CODE)
    return job.id


def _why(max_receives: int, body: str) -> tuple[str, str]:
    """The error code and message of a dead letter's FAILED result."""
    try:
        job = Job.from_message(body)
        if job.is_inline:
            job.inline_bytes()   # a payload that is not base64 is a message nobody can read either
    except InvalidJob as exc:
        return INVALID_CODE, f"the job message could not be read ({clip(exc, 200)}); it is kept in the dead-letter queue"
    return CODE, (f"processing failed {max_receives} times (a worker crashed or ran out of time on this image); "
                  "the job is kept in the dead-letter queue")
