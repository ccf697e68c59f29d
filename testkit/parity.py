"""The inference parity photos and each runtime's raw answer on them: for tests/test_inference_parity.py and
benchmarks/inference.py. Each runtime is loaded once per process, each photo passes through it once."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from app_tier.pipeline import PipelineSettings
from app_tier.pipeline.decode import decode, open_checked
from app_tier.pipeline.labels import merge_labels
from app_tier.pipeline.models import Detection
from sightfleet.vocabulary import load_vocabulary
from testkit.photos import SAMPLES, photo

# Lite0, the classifier both runtimes run (Lite3 is OpenVINO's alone: docs/recognition.md).
DEFAULTS = PipelineSettings(classifier="efficientnet_lite0")
# The pipeline's own cut for the detector: the lowest threshold of a label the detector can name.
MIN_SCORE = min(load_vocabulary().labels[name].threshold for name in load_vocabulary().coco.values()) / 100
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle")
# Every real photo of the shared samples; invalid/ has broken EXIF, corrupted.jpg damaged data.
SHARED_PHOTOS = sorted(str(p.relative_to(SAMPLES)) for p in (SAMPLES / "jpg").rglob("*.jpg")
                       if "invalid" not in p.parts and p.name != "corrupted.jpg")
PHOTOS = [*SKIMAGE_PHOTOS, *SHARED_PHOTOS]


@functools.cache
def shared_pipeline():
    """The real pipeline with default settings, loaded once however many modules ask."""
    from app_tier.pipeline import Pipeline, PipelineSettings
    return Pipeline(PipelineSettings())


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
    """One pipeline per runtime and precision per session (the default one shared with the pipeline tests)."""
    from app_tier.pipeline import Pipeline
    settings = dataclasses.replace(DEFAULTS, inference=runtime, inference_precision=precision)
    return shared_pipeline() if settings == PipelineSettings() else Pipeline(settings)


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
