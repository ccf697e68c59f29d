"""Dead-letter sweep: a job that exhausted its receives gets a FAILED result users can see.

Messages stay in the dead-letter queue for inspection and redrive; marking is idempotent
(a final result is never overwritten), so seeing a message again is harmless.
"""
from __future__ import annotations

import logging

from sightfleet.contracts import Job, failed_result
from sightfleet.errors import ConditionFailed, InvalidJob, NotFound, SightfleetError

log = logging.getLogger(__name__)
CODE = "PROCESSING_FAILED"
# Look at each dead letter again only this often; it stays in the queue meanwhile.
RECHECK_S = 600


def sweep(resources, max_messages: int = 10) -> list[str]:
    """Mark the jobs of up to max_messages dead letters FAILED; returns the ids marked."""
    marked = []
    for message in resources.dead_letters.receive(max_messages, 0, visibility_s=RECHECK_S):
        try:
            job = Job.from_message(message.body)
            current = resources.results.get(job.id)
        except (InvalidJob, NotFound):
            continue
        reason = (f"processing failed {resources.settings.max_receive_count} times (a worker crashed or ran out "
                  "of time on this image); the job is kept in the dead-letter queue")
        try:
            resources.results.finish(failed_result(current, CODE, reason))
        except ConditionFailed:
            continue
        except SightfleetError as exc:
            log.warning("could not mark dead-lettered job %s: %s", job.id, exc)
            continue
        log.warning("job %s dead-lettered after repeated failures; marked FAILED", job.id)
        marked.append(job.id)
    return marked
