"""Merging detector and classifier output into one Rekognition DetectLabels-style label list."""
from __future__ import annotations

import numpy as np

from app_tier.pipeline.models import Detection
from app_tier.pipeline.names import imagenet_display_name, imagenet_parents

DETECTOR, CLASSIFIER, BOTH = "detector", "classifier", "both"


def merge_labels(detections: list[Detection], probabilities: np.ndarray, class_names: list[str],
                 min_confidence: float, max_labels: int, top_k: int) -> list[dict]:
    """One label per name, strongest first, at least min_confidence percent, at most max_labels."""
    labels = {label["Name"].lower(): label for label in detector_labels(detections)}
    for label in classifier_labels(probabilities, class_names, top_k):
        key = label["Name"].lower()
        if key in labels:
            _agree(labels[key], label)
        else:
            labels[key] = label
    kept = [label for label in labels.values() if label["Confidence"] >= min_confidence]
    kept.sort(key=lambda label: (-label["Confidence"], label["Name"]))
    return kept[:max_labels]


def _agree(label: dict, other: dict) -> None:
    """Both models name the same thing: keep the detector's boxes and the stronger confidence."""
    label["Confidence"] = max(label["Confidence"], other["Confidence"])
    label["Parents"] += [p for p in other["Parents"] if p not in label["Parents"]]
    label["Source"] = BOTH


def detector_labels(detections: list[Detection]) -> list[dict]:
    """One label per COCO class with every instance's box; its confidence is its best instance's."""
    by_name: dict[str, list[Detection]] = {}
    for detection in detections:
        by_name.setdefault(detection.name, []).append(detection)
    return [_detector_label(name, sorted(found, key=lambda d: -d.score)) for name, found in by_name.items()]


def _detector_label(name: str, found: list[Detection]) -> dict:
    instances = [{"BoundingBox": bounding_box(d.box), "Confidence": _percent(d.score)} for d in found]
    return {"Name": name, "Confidence": instances[0]["Confidence"], "Instances": instances,
            "Parents": [], "Source": DETECTOR}


def bounding_box(box: tuple[float, float, float, float]) -> dict:
    """(left, top, right, bottom) ratios, already within [0, 1], as Rekognition's Width/Height/Left/Top."""
    left, top, right, bottom = box
    return {"Width": round(max(right - left, 0.0), 4), "Height": round(max(bottom - top, 0.0), 4),
            "Left": round(left, 4), "Top": round(top, 4)}


def classifier_labels(probabilities: np.ndarray, class_names: list[str], top_k: int) -> list[dict]:
    """The top_k ImageNet classes as labels without instances; synonyms sharing a name are merged."""
    labels: dict[str, dict] = {}
    for index in np.argsort(probabilities)[::-1][:top_k]:
        name = imagenet_display_name(class_names[index])
        confidence = _percent(probabilities[index])
        if name not in labels:
            labels[name] = {"Name": name, "Confidence": confidence, "Instances": [],
                            "Parents": imagenet_parents(int(index)), "Source": CLASSIFIER}
    return list(labels.values())


def _percent(score: float) -> float:
    return round(float(score) * 100, 3)
