"""Both runtimes agree: OpenVINO (bf16 default and f32) against native OpenCV DNN + TorchScript on real photos.

Each runtime is loaded once per session and each photo makes one pass through each: the same
prepared inputs (the pipeline's own decode and preprocessing) go to both, so any difference is
the runtime's. Tolerances are the measured worst case with some margin (README.md, Precision).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pytest

from app_tier.pipeline import PipelineSettings
from app_tier.pipeline.decode import decode, open_checked
from app_tier.pipeline.labels import merge_labels
from app_tier.pipeline.models import Detection
from sightfleet.vocabulary import load_vocabulary
from tests.pipeline_fixtures import SAMPLES, photo

# Lite0, the classifier both runtimes run (Lite3 is OpenVINO's alone: docs/recognition.md).
DEFAULTS = PipelineSettings(classifier="efficientnet_lite0")
# The pipeline's own cut for the detector: the lowest threshold of a label the detector can name.
MIN_SCORE = min(load_vocabulary().labels[name].threshold for name in load_vocabulary().coco.values()) / 100
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle")
# Every real photo of the shared samples; invalid/ has broken EXIF, corrupted.jpg damaged data.
SHARED_PHOTOS = sorted(str(p.relative_to(SAMPLES)) for p in (SAMPLES / "jpg").rglob("*.jpg")
                       if "invalid" not in p.parts and p.name != "corrupted.jpg")


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


@dataclass
class Answer:
    """One runtime's raw answer for one photo: detections down to a low score, and class probabilities."""

    detections: list[Detection]
    probabilities: np.ndarray

    def labels(self) -> list[dict]:
        """The service's labels at its default settings."""
        return merge_labels(self.detections, self.probabilities, load_vocabulary(), DEFAULTS.min_confidence,
                            DEFAULTS.max_labels, DEFAULTS.classifier_top_k)


@functools.cache
def pipeline(runtime: str, precision: str = DEFAULTS.inference_precision):
    """One pipeline per runtime and precision per session."""
    from app_tier.pipeline import Pipeline
    return Pipeline(dataclasses.replace(DEFAULTS, inference=runtime, inference_precision=precision))


@functools.cache
def pixels(name: str) -> np.ndarray:
    """The photo as the pipeline's decode gives it (upright, at most 1024 px), or the skimage array."""
    if name in SKIMAGE_PHOTOS:
        return np.asarray(photo(name).convert("RGB"))
    return np.asarray(decode(open_checked((SAMPLES / name).read_bytes(), "JPEG", DEFAULTS.max_pixels),
                             DEFAULTS.annotated_max_side).rgb)


@functools.cache
def answer(name: str, runtime: str, precision: str = DEFAULTS.inference_precision) -> Answer:
    """One pass of both models of one runtime over one photo."""
    models = pipeline(runtime, precision)
    rgb = pixels(name)
    detections, = models.detector.run([models.detector.prepare(rgb)], MIN_SCORE / 4)
    probabilities, = models.classifier.run([models.classifier.prepare(rgb)])
    return Answer(detections, probabilities)


def iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union if union > 0 else 0.0


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


PHOTOS = [*SKIMAGE_PHOTOS, *SHARED_PHOTOS]


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
