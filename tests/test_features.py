"""The features contract: parsing what a caller asks for, and what a job runs."""
import pytest

from sightfleet.contracts import Job, new_image_id, utc_now
from sightfleet.errors import InvalidJob
from sightfleet.features import effective_features, parse_features


@pytest.mark.parametrize("given,expected", [
    ("text", ("text",)), ("Faces, text,text", ("text", "faces")), (["moderation", "labels"], ("labels", "moderation")),
    ("labels,,properties,", ("labels", "properties")),
])
def test_features_parse_in_one_order(given, expected):
    assert parse_features(given) == expected


@pytest.mark.parametrize("given,message", [
    ("", "at least one"), (" , ", "at least one"), ("labels,colour", "'colour'"), ("x" * 201, "at most"),
])
def test_bad_features_say_what_is_wrong(given, message):
    with pytest.raises(ValueError, match=message):
        parse_features(given)


@pytest.mark.parametrize("requested,account,mode,expected", [
    (("text",), ("faces",), "off", ("text",)),
    (None, ("faces",), "off", ("faces",)),
    (None, None, "off", ("labels", "properties")),
    (("text",), None, "flag", ("text", "moderation")),
    ((), None, "hold", ("labels", "properties", "moderation")),
])
def test_effective_features_request_then_account_then_stack(requested, account, mode, expected):
    assert effective_features(requested, account, ("labels", "properties"), mode) == expected


def test_a_job_carries_its_features_and_refuses_unknown_ones():
    job = Job(new_image_id(), "default", "a.jpg", "image/jpeg", utc_now(), 3, inline_b64="YWJj",
              features=("labels", "text"))
    assert Job.from_message(job.to_message()).features == ("labels", "text")
    old = Job(new_image_id(), "default", "a.jpg", "image/jpeg", utc_now(), 3, inline_b64="YWJj")
    assert Job.from_message(old.to_message()).features is None
    for bad in (["colour"], ["text", "labels"], [1], []):
        body = job.to_message().replace('"features":["labels","text"]', f'"features":{bad!r}'.replace("'", '"'))
        with pytest.raises(InvalidJob):
            Job.from_message(body)


def test_a_released_photo_stays_released_when_reprocessing_flags_it_again():
    from app_tier.pipeline.records import Outcome
    from sightfleet.contracts import Result
    from sightfleet.reprocessing import reprocess_job
    job = Job(new_image_id(), "default", "a.jpg", "image/jpeg", utc_now(), 3, inline_b64="YWJj", features=("labels",))
    held = Outcome(id=job.id, status="SUCCEEDED", review={"flagged": True, "held": True})
    first = Result.queued(job).processing("i-1", 1).from_outcome(held).to_dict()
    assert first["review"] == {"flagged": True, "held": True}
    released = {**first, "review": {**first["review"], "held": False, "released_by": "root", "released_at": "t"}}
    again = reprocess_job(released, "input")
    assert again.features == ("labels",) and Job.from_message(again.to_message()) == again
    second = Result.queued(again).processing("i-2", 1).from_outcome(held).to_dict()
    assert second["review"] == {"flagged": True, "held": False, "released_by": "root", "released_at": "t"}
    never = reprocess_job(first, "input")
    assert never.release is None
    assert Result.queued(never).processing("i-2", 1).from_outcome(held).to_dict()["review"]["held"] is True
