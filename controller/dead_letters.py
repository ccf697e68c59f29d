"""Dead-letter sweep: a job that exhausted its receives gets a FAILED result users can see.

Messages stay in the dead-letter queue for inspection and redrive; a job whose result is
already final is skipped, so seeing a message again is harmless.
"""
from __future__ import annotations

import logging

from sightfleet.aws.dynamodb import NoSuchResult
from sightfleet.contracts import FINAL_STATUSES, Job, failed_result
from sightfleet.errors import ConditionFailed, InvalidJob, SightfleetError

log = logging.getLogger(__name__)
CODE = "PROCESSING_FAILED"
# Look at each dead letter again only this often; it stays in the queue meanwhile.
RECHECK_S = 600


def sweep(resources, max_messages: int = 10) -> list[str]:
    """Mark the jobs of up to max_messages dead letters FAILED; returns the ids marked."""
    reason = (f"processing failed {resources.settings.max_receive_count} times (a worker crashed or ran out "
              "of time on this image); the job is kept in the dead-letter queue")
    messages = resources.dead_letters.receive(max_messages, 0, visibility_s=RECHECK_S)
    marked = [_mark(resources, message.body, reason) for message in messages]
    return [job_id for job_id in marked if job_id]


def _mark(resources, body: str, reason: str) -> str | None:
    """Mark one dead letter's job FAILED; its id, or None when there was nothing to mark."""
    try:
        job = Job.from_message(body)
        current = resources.results.get(job.id)
    except (InvalidJob, NoSuchResult):
        return None
    if current.get("status") in FINAL_STATUSES:
        return None
    try:
        resources.results.finish(failed_result(current, CODE, reason))
    except ConditionFailed:
        return None  # a worker finished it between the read and this write
    except SightfleetError as exc:
        log.warning("could not mark dead-lettered job %s: %s", job.id, exc)
        return None
    log.warning("job %s dead-lettered after repeated failures; marked FAILED", job.id)
    return job.id
