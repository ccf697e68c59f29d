"""Pure parts of the workload generator: report arithmetic, ground truth, flags, parsing."""
import io
import random

import numpy as np
import pytest
from PIL import Image

from workload_generator.cli import build_parser, config_from_args
from workload_generator.client import answer_from_result, parse_label_answer, retry_after_s, service_time_ms
from workload_generator.fleet import sample_from_summary
from workload_generator.images import (BUILTIN_GROUND_TRUTH, BUILTIN_NAMES, ImageFile, builtin_images,
                                       folder_images, parse_ground_truth, plan)
from workload_generator.report import (FleetSample, RequestResult, distribution, failure_counts, format_table,
                                       judge, label_matches, percentile, summarize)


def result(name="a.jpg", ok=True, label="cat", started=0.0, latency=1.0, reason=None, attempts=1, service=None):
    return RequestResult(filename=name, ok=ok, started_s=started, latency_s=latency, attempts=attempts,
                         label=label if ok else None, reason=reason, service_ms=service)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
def test_percentile_matches_numpy_linear(n):
    rng = random.Random(n)
    values = [rng.expovariate(1.0) for _ in range(n)]
    for q in (0, 1, 25, 50, 90, 95, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_distribution_of_known_values():
    stats = distribution([4.0, 1.0, 3.0, 2.0])
    assert stats["min"] == 1.0 and stats["max"] == 4.0 and stats["mean"] == 2.5
    assert stats["p50"] == 2.5 and stats["p90"] == pytest.approx(3.7)
    assert set(distribution([]).values()) == {None}


@pytest.mark.parametrize("expected,actual,match", [
    ("cat", "cat", True), ("cat", "Cat", True), ("CAT", "tabby cat", True), ("cat", "Egyptian cat", True),
    ("cat", "catamaran", False), ("cup", "cupboard", False), ("cup", "coffee mug", False),
    ("motorcycle", "motorcycle", True), ("cat", None, False), ("", "cat", False),
    ("hot dog", "Hot Dog", True), ("tabby, tabby cat", "tabby, tabby cat", True),
])
def test_label_matching_is_case_insensitive_whole_word_substring(expected, actual, match):
    assert label_matches(expected, actual) is match


def test_ground_truth_csv_and_correctness_counting():
    csv_text = "# course ground truth\nImage,Results\ntest_00,Paul\ntest_01.jpg,cat\n\ntest_02 , cup \n"
    truth = parse_ground_truth(io.StringIO(csv_text))
    assert truth == {"test_00": "Paul", "test_01": "cat", "test_02": "cup"}
    results = [result("test_00.jpg", label="paul"), result("test_01.png", label="tabby cat"),
               result("test_02.jpg", label="coffee mug"), result("other.jpg", label="dog"),
               result("test_00.jpg", ok=False, reason="timeout")]
    judgement = judge(results, truth)
    assert (judgement.correct, judgement.wrong, judgement.unchecked) == (2, 1, 1)
    assert judgement.accuracy == pytest.approx(2 / 3)
    assert judgement.wrong_examples == [{"name": "test_02", "expected": "cup", "got": "coffee mug"}]


def test_ground_truth_rejects_lines_without_label():
    with pytest.raises(ValueError):
        parse_ground_truth(["test_00\n"])


def test_failures_by_reason_most_frequent_first():
    results = [result(ok=False, reason="http_503:overloaded"), result(ok=False, reason="timeout"),
               result(ok=False, reason="timeout"), result(), result(ok=False, reason="connection_error")]
    assert list(failure_counts(results).items()) == [
        ("timeout", 2), ("http_503:overloaded", 1), ("connection_error", 1)]


def test_summary_throughput_latency_and_table():
    results = [result(f"i{i}.jpg", latency=float(i + 1), started=0.5 * i, attempts=1 + (i == 3), service=40.0 + i)
               for i in range(8)]
    results.append(result("bad.jpg", ok=False, reason="http_415:unsupported_format", latency=100.0))
    fleet = [FleetSample(t, running=t, pending=1, desired=t + 1, visible=5 - t, in_flight=t, dead_letter=0)
             for t in range(4)]
    summary = summarize(results, planned=10, sent=9, duration_s=4.5, truth={"i0": "cat", "i1": "dog"}, fleet=fleet)
    assert (summary.succeeded, summary.failed, summary.completed) == (8, 1, 9)
    assert summary.throughput_rps == pytest.approx(2.0) and summary.success_rps == pytest.approx(8 / 4.5)
    assert summary.latency_s["max"] == 8.0  # failures are not in the latency figures
    assert summary.latency_s["p50"] == pytest.approx(np.percentile(range(1, 9), 50))
    assert summary.service_ms["p50"] == pytest.approx(43.5)
    assert (summary.retried_requests, summary.retries) == (1, 1)
    assert summary.fleet["peak_running"] == 3 and summary.fleet["peak_desired"] == 4
    assert (summary.judgement.correct, summary.judgement.wrong, summary.judgement.unchecked) == (1, 1, 6)
    doc = summary.to_dict()
    assert doc["unfinished"] == 0 and doc["judgement"]["accuracy"] == 0.5
    table = format_table(summary, "T")
    for text in ("succeeded", "http_415:unsupported_format", "1 / 1 / 6", "2.00 completed/s", "p99", "3 / 4"):
        assert text in table


def test_summary_of_nothing_is_well_formed():
    summary = summarize([], planned=5, sent=0, duration_s=0.0, interrupted=True)
    assert summary.throughput_rps == 0.0 and summary.latency_s["p50"] is None and summary.fleet is None
    assert "unfinished (interrupted)" in format_table(summary)


def test_course_and_dashed_flag_names_parse_alike():
    course = build_parser().parse_args(["--url", "http://h/", "--num_request", "7", "--image_folder", "d",
                                        "--ground_truth", "g.csv"])
    dashed = build_parser().parse_args(["--url", "http://h/", "--num-request", "7", "--image-folder", "d",
                                        "--ground-truth", "g.csv"])
    assert vars(course) == vars(dashed)
    config = config_from_args(course)
    assert (config.num_requests, config.concurrency, config.mode, config.retries, config.timeout_s) == (
        7, 10, "sync", 2, 120.0)


def test_bad_flags_are_refused():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--url", "http://h/", "--mode", "batch"])
    with pytest.raises(ValueError):
        config_from_args(build_parser().parse_args(["--url", "http://h/", "--concurrency", "0"]))


def test_retry_after_header_forms():
    assert retry_after_s("3") == 3.0
    assert retry_after_s("-1") == 0.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now
    assert 0 < retry_after_s("Fri, 01 Jan 2100 00:00:00 GMT")


def test_parsing_answers_and_results():
    assert parse_label_answer("test_00", "test_00:Paul\n") == "Paul"
    assert parse_label_answer("a:b", "a:b:cat") == "cat"
    with pytest.raises(ValueError):
        parse_label_answer("x", "<html>oops</html>")
    done = {"id": "f" * 32, "status": "SUCCEEDED", "top_label": None, "labels": [{"Name": "cup", "Confidence": 95}],
            "timings": {"total_ms": 56.5}, "instance_id": "i-1"}
    answer = answer_from_result(done)
    assert (answer.label, answer.service_ms, answer.instance_id) == ("cup", 56.5, "i-1")
    assert service_time_ms({"total": 12}) == 12.0 and service_time_ms({}) is None


def test_fleet_sample_from_summary_document():
    doc = {"instances": {"running": 3, "pending": 2, "desired": 5}, "queue": {"visible": 7, "in_flight": 4}}
    assert sample_from_summary(doc, 1.5) == FleetSample(1.5, 3, 2, 5, 7, 4, 0)


def test_builtin_photos_are_real_jpegs_with_ground_truth():
    images = builtin_images()
    assert [i.name for i in images] == list(BUILTIN_NAMES)
    for image in images:
        data = image.read()
        assert data[:3] == b"\xff\xd8\xff" and image.content_type == "image/jpeg"
        with Image.open(io.BytesIO(data)) as photo:
            assert photo.format == "JPEG" and min(photo.size) >= 300
    assert set(BUILTIN_GROUND_TRUTH) <= set(BUILTIN_NAMES)


def test_folder_images_cycle(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("no")
    images = folder_images(tmp_path)
    assert [i.filename for i in images] == ["a.jpg", "b.PNG", "c.jpeg"]
    assert images[1].content_type == "image/png"
    assert [i.name for i in plan(images, 7)] == ["a", "b", "c", "a", "b", "c", "a"]
    assert plan(images, None) == images and plan(images, 0) == []
    with pytest.raises(FileNotFoundError):
        folder_images(tmp_path / "missing")
    assert ImageFile("x.jpg", path=tmp_path / "a.jpg").read() == b"x"
