"""Table-driven tests of the pure rule that decides how a job's way ends (app_tier/endings.py)."""
from __future__ import annotations

import pytest

from app_tier.endings import (
    ACKNOWLEDGE, DONE, FAIL, FOREIGN, FOREIGN_INPUT, HAND_BACK, INPUT_GONE, MISSING_INPUT, NOT_A_JOB, PIPELINE_FAILED,
    REJECTED, RESULT_TOO_LARGE, STORAGE_REJECTED, STORAGE_UNAVAILABLE, TOO_LARGE, UNAVAILABLE, UNEXPECTED, ending,
)

LIMIT = 3
AT_ONCE, LATER = False, True

# name, what happened, receive count, can a FAILED result be recorded, action, code, handed back later
CASES = [
    ("stored: acknowledged", DONE, 1, True, ACKNOWLEDGE, None, False),
    ("found stored on a redelivery", DONE, 2, True, ACKNOWLEDGE, None, False),
    ("a recorded failure stands: acknowledged", DONE, 1, False, ACKNOWLEDGE, None, False),
    ("not a job: back at once, towards the dead letters", NOT_A_JOB, 1, False, HAND_BACK, None, AT_ONCE),
    ("not a job on the last receive: still back", NOT_A_JOB, LIMIT, False, HAND_BACK, None, AT_ONCE),
    ("storage down: tried again later", UNAVAILABLE, 1, True, HAND_BACK, None, LATER),
    ("storage down, one receive left", UNAVAILABLE, LIMIT - 1, True, HAND_BACK, None, LATER),
    ("storage down on the last receive: failed", UNAVAILABLE, LIMIT, True, FAIL, STORAGE_UNAVAILABLE, None),
    ("storage down past the limit: failed", UNAVAILABLE, LIMIT + 2, True, FAIL, STORAGE_UNAVAILABLE, None),
    ("storage down, failure unrecordable: back", UNAVAILABLE, LIMIT, False, HAND_BACK, None, LATER),
    ("original gone: failed at once", INPUT_GONE, 1, True, FAIL, MISSING_INPUT, None),
    ("another owner's original named: failed at once", FOREIGN, 1, True, FAIL, FOREIGN_INPUT, None),
    ("storage refused: failed at once", REJECTED, 1, True, FAIL, STORAGE_REJECTED, None),
    ("the failure refused too: back", REJECTED, 1, False, HAND_BACK, None, LATER),
    ("result too large: failed", TOO_LARGE, 1, True, FAIL, RESULT_TOO_LARGE, None),
    ("pipeline failed a chunk: tried again", PIPELINE_FAILED, 1, True, HAND_BACK, None, LATER),
    ("pipeline failed on the last receive: back", PIPELINE_FAILED, LIMIT, True, HAND_BACK, None, LATER),
    ("a bug: tried again", UNEXPECTED, 1, True, HAND_BACK, None, LATER),
    ("a bug on the last receive: back, then redrive", UNEXPECTED, LIMIT, True, HAND_BACK, None, LATER),
]


@pytest.mark.parametrize("name,kind,receives,can_record,action,code,later", CASES, ids=[c[0] for c in CASES])
def test_ending(name, kind, receives, can_record, action, code, later):
    decided = ending(kind, receives, LIMIT, can_record=can_record, detail="why")
    assert decided.action == action and decided.code == code
    if action == HAND_BACK:
        assert decided.later is later


def test_a_failure_says_why_and_how_often_it_was_tried():
    assert ending(UNAVAILABLE, 3, 3, detail="S3 down").reason == "gave up after 3 attempts: S3 down"
    assert ending(REJECTED, 1, 3, detail="{x}").reason == "storage refused the request: {x}"
    assert ending(INPUT_GONE, 1, 3).reason == "the uploaded image is no longer stored"
    assert "could not record the failure (STORAGE_REJECTED" in ending(REJECTED, 1, 3, can_record=False).reason
