"""How a job's way ends: a pure function from what happened to the ending, checked by a table (tests/test_endings.py).

No I/O and no clock here. The steps of app_tier/jobs.py report what happened (or raise, and the
exception is sorted into one of these kinds); this rule decides; jobs.py applies the decision.

Every job ends in exactly one of three ways:
- ACKNOWLEDGE: its final result stands (stored now, or found stored); the response is sent and the
  message deleted;
- HAND_BACK: the message is visible again, at once or after the retry delay, for another try here or
  elsewhere (after the queue's max receive count, redrive moves it to the dead-letter queue);
- FAIL: a FAILED result with a code is stored, and that write ends the job in turn (acknowledged once
  it stands; a failure that cannot be recorded is handed back instead).
"""
from __future__ import annotations

from dataclasses import dataclass

ACKNOWLEDGE, HAND_BACK, FAIL = "acknowledge", "hand back", "fail"

# What happened, as the rule sees it.
DONE = "done"                        # the final result stands
NOT_A_JOB = "not a job"              # the message cannot be read as a job
INPUT_GONE = "input gone"            # the uploaded original is no longer stored
FOREIGN = "foreign input"            # a pointer job names an original that its owner and id do not imply
REJECTED = "rejected"                # storage refused a request that can never succeed as made
TOO_LARGE = "too large"              # the result is too large to store
UNAVAILABLE = "unavailable"          # storage out of reach or refusing for now
PIPELINE_FAILED = "pipeline failed"  # the pipeline failed a whole chunk (a bug there)
UNEXPECTED = "unexpected"            # any other exception (a bug here)

# Codes of the FAILED results the job path writes (the pipeline's own are in app_tier/pipeline/errors.py).
MISSING_INPUT = "MISSING_INPUT"
STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
STORAGE_REJECTED = "STORAGE_REJECTED"
RESULT_TOO_LARGE = "RESULT_TOO_LARGE"
FOREIGN_INPUT = "FOREIGN_INPUT"

# Kinds that fail the job at once, whatever the receive count: trying again cannot help.
_FAIL_AT_ONCE = {
    INPUT_GONE: (MISSING_INPUT, "the uploaded image is no longer stored"),
    FOREIGN: (FOREIGN_INPUT, "{detail}"),
    REJECTED: (STORAGE_REJECTED, "storage refused the request: {detail}"),
    TOO_LARGE: (RESULT_TOO_LARGE, "the result could not be stored: {detail}"),
}


@dataclass(frozen=True)
class Happened:
    """What a step reports when a job's way ends there: its kind, why, and the standing result (DONE)."""

    kind: str
    detail: str = ""
    result: dict | None = None


@dataclass(frozen=True)
class Ending:
    """The decision: ACKNOWLEDGE, HAND_BACK (later: after the retry delay, else at once) or FAIL with a code."""

    action: str
    reason: str = ""
    code: str | None = None
    later: bool = False


def ending(kind: str, receives: int, limit: int, can_record: bool = True, detail: str = "") -> Ending:
    """The ending of a job whose step reported `kind` on receive `receives` of `limit`.

    can_record: False when no FAILED result can be written (the message was never read as a job, or
    the failure being written is what failed): a FAIL becomes a hand-back, for another try.
    """
    if kind == DONE:
        return Ending(ACKNOWLEDGE)
    if kind == NOT_A_JOB:
        # At once: each receive brings it nearer to the dead-letter queue, where the sweep answers it.
        return Ending(HAND_BACK, "not a job")
    failure = _FAIL_AT_ONCE.get(kind)
    if kind == UNAVAILABLE and receives >= limit:
        failure = (STORAGE_UNAVAILABLE, f"gave up after {receives} attempts: {{detail}}")
    if failure is None:
        return Ending(HAND_BACK, detail or kind, later=True)
    code, message = failure[0], failure[1].format(detail=detail)
    if not can_record:
        return Ending(HAND_BACK, f"could not record the failure ({code}: {message})", later=True)
    return Ending(FAIL, message, code)
