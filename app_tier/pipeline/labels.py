"""Merging detector and classifier output into one Rekognition DetectLabels-style label list.

Both models' classes map to the curated vocabulary's canonical labels (sightfleet/vocabulary.py):
a detector label has the boxes of its instances; a classifier label's confidence is the summed
probability of the ImageNet classes that map to it or to its descendants (116 dog breeds make one
"Dog"; Car gathers Sports Car and Taxi). Every kept label brings its ancestors as labels of their own,
each as confident as its strongest kept descendant, as Rekognition returns "Animal" beside "Cat".
Each label carries Parents (all its ancestors, nearest first, as Rekognition lists them), Aliases and
Categories.
"""
from __future__ import annotations

import functools

import numpy as np

from app_tier.pipeline.models import Detection
from sightfleet.vocabulary import Vocabulary

DETECTOR, CLASSIFIER, BOTH, HIERARCHY = "detector", "classifier", "both", "hierarchy"


def merge_labels(detections: list[Detection], probabilities: np.ndarray, vocabulary: Vocabulary,
                 min_confidence: float, max_labels: int, top_k: int, thresholds: bool = True) -> list[dict]:
    """One label per canonical name, strongest first, each at or above its own threshold and min_confidence.

    thresholds=False: min_confidence alone decides (the weaker labels kept for reads that ask for them).
    """
    labels = {label["Name"]: label for label in detector_labels(detections, vocabulary)}
    for label in classifier_labels(probabilities, vocabulary, top_k):
        if label["Name"] in labels:
            _agree(labels[label["Name"]], label)
        else:
            labels[label["Name"]] = label
    kept = {name: label for name, label in labels.items() if _passes(vocabulary, label, min_confidence, thresholds)}
    with_ancestors = add_ancestors(kept, vocabulary)
    ordered = sorted(with_ancestors.values(), key=lambda label: _order(vocabulary, label))
    return [_described(vocabulary, label) for label in ordered[:max_labels]]


def _passes(vocabulary: Vocabulary, label: dict, min_confidence: float, thresholds: bool = True) -> bool:
    info = vocabulary.labels[label["Name"]]
    return not info.suppressed and label["Confidence"] >= max(info.threshold if thresholds else 0, min_confidence)


def _order(vocabulary: Vocabulary, label: dict) -> tuple:
    """Strongest first; among equals the more specific (a descendant before the ancestor it lends its
    confidence to), then the higher priority, then by name."""
    name = label["Name"]
    return -label["Confidence"], -vocabulary.depth(name), -vocabulary.labels[name].priority, name


def _agree(label: dict, other: dict) -> None:
    """Both models name the same thing: keep the detector's boxes and the stronger confidence."""
    label["Confidence"] = max(label["Confidence"], other["Confidence"])
    label["Source"] = BOTH


def add_ancestors(labels: dict[str, dict], vocabulary: Vocabulary) -> dict[str, dict]:
    """The labels and every ancestor of theirs, each ancestor as confident as its strongest descendant.

    "Descendant" means a kept label with no kept label below it: Animal, Mammal and Cat all read the
    cat's confidence, so the cat comes first. A kept label with nothing kept below keeps its own.
    """
    leaves = {name: label for name, label in labels.items() if not vocabulary.descendants(name) & labels.keys()}
    found = {name: dict(label) for name, label in labels.items()}
    for name in labels.keys() - leaves.keys():
        found[name]["Confidence"] = 0.0
    for leaf in leaves.values():
        for ancestor in vocabulary.ancestors(leaf["Name"]):
            if vocabulary.labels[ancestor].suppressed:
                continue
            entry = found.setdefault(ancestor, {"Name": ancestor, "Confidence": 0.0, "Instances": [],
                                                "Source": HIERARCHY})
            entry["Confidence"] = max(entry["Confidence"], leaf["Confidence"])
    return found


def _described(vocabulary: Vocabulary, label: dict) -> dict:
    """The label with Rekognition's Parents, Aliases and Categories from the vocabulary."""
    info = vocabulary.labels[label["Name"]]
    return {"Name": info.name, "Confidence": label["Confidence"], "Instances": label["Instances"],
            "Parents": [{"Name": n} for n in vocabulary.ancestors(info.name)],
            "Aliases": [{"Name": n} for n in info.aliases],
            "Categories": [{"Name": n} for n in info.categories], "Source": label["Source"]}


def detector_labels(detections: list[Detection], vocabulary: Vocabulary) -> list[dict]:
    """One label per canonical name with every instance's box; its confidence is its best instance's."""
    by_name: dict[str, list[Detection]] = {}
    for detection in detections:
        by_name.setdefault(vocabulary.coco[detection.class_id], []).append(detection)
    return [_detector_label(name, sorted(found, key=lambda d: -d.score)) for name, found in by_name.items()]


def _detector_label(name: str, found: list[Detection]) -> dict:
    instances = [{"BoundingBox": bounding_box(d.box), "Confidence": _percent(d.score)} for d in found]
    return {"Name": name, "Confidence": instances[0]["Confidence"], "Instances": instances, "Source": DETECTOR}


def bounding_box(box: tuple[float, float, float, float]) -> dict:
    """(left, top, right, bottom) ratios, already within [0, 1], as Rekognition's Width/Height/Left/Top."""
    left, top, right, bottom = box
    return {"Width": round(max(right - left, 0.0), 4), "Height": round(max(bottom - top, 0.0), 4),
            "Left": round(left, 4), "Top": round(top, 4)}


def canonical_probabilities(probabilities: np.ndarray, vocabulary: Vocabulary) -> dict[str, float]:
    """Each canonical label's summed probability over the ImageNet classes that map to it."""
    names, index = _imagenet_index(vocabulary)
    sums = np.bincount(index, weights=np.asarray(probabilities, dtype=np.float64), minlength=len(names))
    return dict(zip(names, sums.tolist()))


@functools.lru_cache(maxsize=4)
def _imagenet_index(vocabulary: Vocabulary) -> tuple[list[str], np.ndarray]:
    """The distinct canonical names of the ImageNet classes and each class's position among them."""
    names = sorted(set(vocabulary.imagenet))
    position = {name: i for i, name in enumerate(names)}
    return names, np.array([position[n] for n in vocabulary.imagenet], dtype=np.int64)


def classifier_labels(probabilities: np.ndarray, vocabulary: Vocabulary, top_k: int) -> list[dict]:
    """The top_k canonical labels the classes map to, and their ancestors, as labels without instances.

    Each one's confidence is the summed probability of the classes that map to it or to a descendant
    (Car gathers Sports Car, Taxi and Minivan), so a parent can pass its threshold where no child does.
    """
    direct = canonical_probabilities(probabilities, vocabulary)
    guesses = [name for name in sorted(direct, key=lambda name: -direct[name])[:top_k] if direct[name] > 0]
    kept = dict.fromkeys(label for name in guesses for label in (name, *vocabulary.ancestors(name)))
    classes = _subtree_classes(vocabulary)
    return [{"Name": name, "Confidence": _percent(probabilities[classes[name]].sum()), "Instances": [],
             "Source": CLASSIFIER} for name in kept]


@functools.lru_cache(maxsize=4)
def _subtree_classes(vocabulary: Vocabulary) -> dict[str, np.ndarray]:
    """For each label, the ImageNet class indices that map to it or to one of its descendants."""
    found: dict[str, list[int]] = {}
    for index, name in enumerate(vocabulary.imagenet):
        for label in (name, *vocabulary.ancestors(name)):
            found.setdefault(label, []).append(index)
    return {name: np.array(indices, dtype=np.int64) for name, indices in found.items()}


def model_version(detector: str, classifier: str, vocabulary: Vocabulary) -> str:
    """The result's label_model_version: which detector, classifier and vocabulary made its labels."""
    return f"{detector}+{classifier}+vocabulary-{vocabulary.version}"


def _percent(score: float) -> float:
    return round(min(float(score), 1.0) * 100, 3)
