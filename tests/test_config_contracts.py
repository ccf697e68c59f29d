"""Settings from the environment, resource names, and the job/result contracts."""
from __future__ import annotations

import pytest

from sightfleet.config import ConfigError, Settings
from sightfleet.contracts import Job, clean_album, input_key, label_answer, new_image_id, utc_now
from sightfleet.errors import InvalidJob
from sightfleet.formats import sniff_format, unsupported_message
from web_tier.submit import safe_filename


def test_settings_read_documented_variables():
    settings = Settings.from_env({
        "SIGHTFLEET_PREFIX": "demo", "PORT": "9000", "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "SIGHTFLEET_MAX_INSTANCES": "7", "SIGHTFLEET_MAX_UPLOAD_MB": "2.5", "AWS_DEFAULT_REGION": "eu-west-1",
    })
    assert (settings.port, settings.max_instances, settings.region) == (9000, 7, "eu-west-1")
    assert settings.max_upload_bytes == int(2.5 * 1024 * 1024)
    assert settings.is_local
    names = settings.names
    assert (names.request_queue, names.dead_letter_queue, names.input_bucket, names.results_table) == (
        "demo-requests", "demo-requests-dlq", "demo-input", "demo-results")


def test_unset_endpoint_means_real_aws():
    assert not Settings.from_env({}).is_local


@pytest.mark.parametrize("env", [
    {"SIGHTFLEET_PREFIX": "Bad_Prefix!"},
    {"SIGHTFLEET_MAX_INSTANCES": "many"},
    {"SIGHTFLEET_MIN_INSTANCES": "5", "SIGHTFLEET_MAX_INSTANCES": "2"},
    {"SIGHTFLEET_MAX_UPLOAD_MB": "0"},
])
def test_bad_settings_are_refused_with_the_variable_named(env):
    with pytest.raises(ConfigError, match="SIGHTFLEET_"):
        Settings.from_env(env)


def test_job_round_trip_and_rejection():
    job = Job(new_image_id(), "default", "a.jpg", "image/jpeg", utc_now(), 3, inline_b64="YWJj")
    assert Job.from_message(job.to_message()) == job and job.inline_bytes() == b"abc"
    for body in ("{", '{"v": 2}', '{"v": 1, "id": "../../x"}', '{"v":1,"id":"%s","album":"a","filename":"f",'
                 '"content_type":"image/jpeg","submitted_at":"t","size":1}' % ("a" * 32)):
        with pytest.raises(InvalidJob):
            Job.from_message(body)


def test_keys_never_come_from_file_names():
    image_id = new_image_id()
    assert input_key("alice", image_id, "image/png") == f"originals/alice/{image_id}.png"
    assert safe_filename("../../etc/passwd.jpg") == "passwd.jpg"
    assert safe_filename("a\x00b\nc.jpg") == "abc.jpg"
    assert safe_filename("") == "upload"


def test_album_names_and_cse546_answer():
    assert clean_album("  ") == "default" and clean_album("Holiday 2026") == "Holiday 2026"
    with pytest.raises(ValueError):
        clean_album("<script>")
    assert label_answer("test_00.JPEG", "cat") == "test_00:cat"


@pytest.mark.parametrize("head,name", [
    (b"\xff\xd8\xff\xe0", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"),
    (b"\x00\x00\x00\x18ftypheic", "HEIF"), (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"), (b"hello world", "TEXT"), (bytes(range(0, 256, 7)), None),
])
def test_format_sniffing(head, name):
    assert sniff_format(head) == name


def test_unsupported_reasons_name_the_format():
    assert "empty" in unsupported_message(b"")
    assert "TIFF" in unsupported_message(b"II*\x00")
    assert unsupported_message(b"\xff\xd8\xff\xe0") is None


def test_the_typed_row_names_every_field_of_the_result():
    """ResultDoc (what stores speak) and Result (what the tiers make) must not drift apart."""
    from dataclasses import fields as dataclass_fields
    from sightfleet.contracts import Result, ResultDoc
    tombstone_only = {"deleted_at", "expires_at", "input_keys", "output_keys"}
    assert set(ResultDoc.__annotations__) - tombstone_only == {f.name for f in dataclass_fields(Result)}
