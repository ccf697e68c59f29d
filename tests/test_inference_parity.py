"""Both runtimes agree: OpenVINO (bf16 default and f32) against native OpenCV DNN + TorchScript on real photos.

Each runtime is loaded once per session and each photo makes one pass through each: the same
prepared inputs (the pipeline's own decode and preprocessing) go to both, so any difference is
the runtime's. Tolerances are the measured worst case with some margin (README.md, Precision).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from app_tier.pipeline.models import Detection
from sightfleet.vocabulary import load_vocabulary
from testkit.parity import DEFAULTS, MIN_SCORE, PHOTOS, SHARED_PHOTOS, Answer, answer, iou, pipeline

pytestmark = pytest.mark.slow  # models loaded


@dataclass(frozen=True)
class Tolerance:
    """How far one runtime may be from native: probabilities and scores (0-1), box overlap, label confidence (%)."""

    probability: float
    score: float
    iou: float
    confidence: float


# bf16 measured (32 photos): probabilities within 0.046, scores within 0.017, IoU at least 0.96.
BF16 = Tolerance(probability=0.06, score=0.03, iou=0.9, confidence=6.0)
# f32 computes what native computes: measured differences below 1e-4.
F32 = Tolerance(probability=1e-3, score=1e-3, iou=0.99, confidence=0.1)


def assert_detections_match(kept_by: list[Detection], other: list[Detection], tolerance: Tolerance) -> None:
    """Each detection the service keeps has a same-class partner with IoU >= tolerance.iou and a close score."""
    for detection in (d for d in kept_by if d.score >= MIN_SCORE):
        partners = [d for d in other if d.class_id == detection.class_id]
        assert partners, f"{detection.name} {detection.score:.3f} has no partner in {other}"
        best = max(partners, key=lambda d: iou(d.box, detection.box))
        assert iou(best.box, detection.box) >= tolerance.iou, (detection, best)
        assert abs(best.score - detection.score) <= tolerance.score, (detection, best)


def assert_top_names_agree(labels: list[dict], other: list[dict], tolerance: Tolerance) -> None:
    """Names among the top three agree, but for a label within tolerance of its cut (its own threshold) or of
    the other's third."""
    top_other = other[:3]
    other_names = {label["Name"] for label in top_other}
    for label in labels[:3]:
        cut = max(load_vocabulary().labels[label["Name"]].threshold, DEFAULTS.min_confidence)
        floor = top_other[-1]["Confidence"] if len(top_other) == 3 else cut
        if label["Name"] not in other_names:
            assert label["Confidence"] - floor <= tolerance.confidence, (labels[:3], top_other)


def assert_agree(reference: Answer, candidate: Answer, tolerance: Tolerance) -> None:
    difference = np.abs(reference.probabilities - candidate.probabilities).max()
    assert difference <= tolerance.probability, f"probabilities differ by {difference:.4f}"
    assert_detections_match(reference.detections, candidate.detections, tolerance)
    assert_detections_match(candidate.detections, reference.detections, tolerance)
    ours, theirs = reference.labels(), candidate.labels()
    assert_top_names_agree(ours, theirs, tolerance)
    assert_top_names_agree(theirs, ours, tolerance)




def test_the_photo_set_is_the_real_one():
    assert len(SHARED_PHOTOS) >= 25 and "jpg/Canon_40D.jpg" in SHARED_PHOTOS
    assert pipeline("openvino").runtime == "openvino" and pipeline("native").runtime == "native"


@pytest.mark.parametrize("name", PHOTOS)
def test_openvino_default_agrees_with_native(name):
    assert_agree(answer(name, "native"), answer(name, "openvino"), BF16 if DEFAULTS.inference_precision == "bf16"
                 else F32)


@pytest.mark.parametrize("name", PHOTOS)
def test_openvino_f32_agrees_with_native_to_rounding(name):
    native, f32 = answer(name, "native"), answer(name, "openvino", "f32")
    assert_agree(native, f32, F32)
    assert set(np.argsort(-native.probabilities)[:3]) == set(np.argsort(-f32.probabilities)[:3])


def test_the_comparison_can_fail():
    """A shifted box, a changed probability or a different top name is caught."""
    chelsea = answer("chelsea", "native")
    cat = max(chelsea.detections, key=lambda d: d.score)
    moved = Detection(cat.class_id, cat.score, (cat.box[0] + 0.1, cat.box[1], min(1.0, cat.box[2] + 0.1), cat.box[3]))
    with pytest.raises(AssertionError):
        assert_detections_match([cat], [moved], BF16)
    with pytest.raises(AssertionError):
        assert_agree(chelsea, Answer(chelsea.detections, np.roll(chelsea.probabilities, 1)), BF16)
    coffee = answer("coffee", "native")
    with pytest.raises(AssertionError):
        assert_agree(chelsea, Answer(chelsea.detections, coffee.probabilities), BF16)
