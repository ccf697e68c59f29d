"""DetectText, DetectFaces and DetectModerationLabels: reading each call and writing its answer, as pure functions.

Each answer is cut from a SUCCEEDED result's fields (sightfleet/features.py RESULT_FIELDS), which the
worker already keeps in Rekognition's shapes; here they are filtered as the call asks and trimmed to
exactly botocore's output shape. OPERATIONS is the table of every operation this endpoint answers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, NamedTuple

from sightfleet.features import FACES, MODERATION, TEXT
from web_tier.rekognition.protocol import (AwsError, ImageCall, call_body, invalid, labels_answer,
                                           number, parse_detect_labels, structure)

DEFAULT_WORD_CONFIDENCE = 80.0        # DetectionFilter's MinConfidence when a WordFilter leaves it out
DEFAULT_MODERATION_CONFIDENCE = 50.0  # DetectModerationLabels' default MinConfidence
MAX_REGIONS, MAX_POLYGON_POINTS = 10, 10
_BOX = ("Width", "Height", "Left", "Top")
# Rekognition's face attributes: DEFAULT's five always come back; the others would need models that
# estimate them (age, emotions, ...), which this service does not run: ALL answers what DEFAULT does.
FACE_ATTRIBUTES = ("DEFAULT", "ALL", "AGE_RANGE", "BEARD", "EMOTIONS", "EYE_DIRECTION", "EYEGLASSES", "EYES_OPEN",
                   "GENDER", "MOUTH_OPEN", "MUSTACHE", "FACE_OCCLUDED", "SMILE", "SUNGLASSES")
DEFAULT_FACE_FIELDS = ("BoundingBox", "Confidence", "Landmarks", "Pose", "Quality")
LANDMARK_TYPES = frozenset((
    "eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight", "leftEyeBrowLeft", "leftEyeBrowRight", "leftEyeBrowUp",
    "rightEyeBrowLeft", "rightEyeBrowRight", "rightEyeBrowUp", "leftEyeLeft", "leftEyeRight", "leftEyeUp",
    "leftEyeDown", "rightEyeLeft", "rightEyeRight", "rightEyeUp", "rightEyeDown", "noseLeft", "noseRight", "mouthUp",
    "mouthDown", "leftPupil", "rightPupil", "upperJawlineLeft", "midJawlineLeft", "chinBottom", "midJawlineRight",
    "upperJawlineRight"))

_HUMAN_LOOP_NAME = re.compile(r"[a-z0-9](-*[a-z0-9]){0,62}")
Point = tuple[float, float]


@dataclass(frozen=True)
class DetectText(ImageCall):
    """One DetectText call: its image and its filters (None: no WordFilter given)."""

    min_confidence: float | None = None
    min_height: float = 0.0
    min_width: float = 0.0
    regions: tuple[tuple[Point, ...], ...] = ()   # each region as a polygon (a BoundingBox is its four corners)

    @property
    def features(self) -> tuple[str, ...]:
        return (TEXT,)


@dataclass(frozen=True)
class DetectFaces(ImageCall):
    """One DetectFaces call (the attributes asked change nothing: see FACE_ATTRIBUTES)."""

    attributes: tuple[str, ...] = ("DEFAULT",)

    @property
    def features(self) -> tuple[str, ...]:
        return (FACES,)


@dataclass(frozen=True)
class DetectModerationLabels(ImageCall):
    """One DetectModerationLabels call: its image and the confidence floor."""

    min_confidence: float = DEFAULT_MODERATION_CONFIDENCE

    @property
    def features(self) -> tuple[str, ...]:
        return (MODERATION,)


def _corners(box: dict, where: str) -> tuple[Point, ...]:
    box = structure(box, where, _BOX)
    if set(box) != set(_BOX):
        raise invalid(f"{where} needs Width, Height, Left and Top")
    width, height, left, top = (number(box, key, 0, 1, where=f"{where}.") for key in _BOX)
    return (left, top), (left + width, top), (left + width, top + height), (left, top + height)


def _polygon(points: object, where: str) -> tuple[Point, ...]:
    if not isinstance(points, list) or not 3 <= len(points) <= MAX_POLYGON_POINTS:
        raise invalid(f"{where} is a list of 3 to {MAX_POLYGON_POINTS} points")
    checked = [structure(point, f"{where}[]", ("X", "Y")) for point in points]
    if any(set(point) != {"X", "Y"} for point in checked):
        raise invalid(f"each point of {where} needs X and Y")
    return tuple((number(p, "X", 0, 1, where=f"{where}[]."), number(p, "Y", 0, 1, where=f"{where}[].")) for p in checked)


def _region(region: object, index: int) -> tuple[Point, ...]:
    where = f"Filters.RegionsOfInterest[{index}]"
    region = structure(region, where, ("BoundingBox", "Polygon"))
    if len(region) != 1:
        raise invalid(f"{where} needs exactly one of BoundingBox or Polygon")
    if "BoundingBox" in region:
        return _corners(region["BoundingBox"], f"{where}.BoundingBox")
    return _polygon(region["Polygon"], f"{where}.Polygon")


def parse_detect_text(doc: object) -> DetectText:
    """A DetectText call from its JSON body; AwsError when malformed."""
    doc, image = call_body(doc, "DetectText", ("Filters",))
    filters = structure(doc.get("Filters"), "Filters", ("WordFilter", "RegionsOfInterest"))
    regions = filters.get("RegionsOfInterest", [])
    if not isinstance(regions, list) or len(regions) > MAX_REGIONS:
        raise invalid(f"Filters.RegionsOfInterest is a list of at most {MAX_REGIONS} regions")
    where = "Filters.WordFilter."
    words = structure(filters.get("WordFilter"), "Filters.WordFilter",
                      ("MinConfidence", "MinBoundingBoxHeight", "MinBoundingBoxWidth"))
    confidence = number(words, "MinConfidence", 0, 100, where=where)
    if confidence is None and "WordFilter" in filters:
        confidence = DEFAULT_WORD_CONFIDENCE
    return DetectText(*image, min_confidence=confidence,
                      min_height=number(words, "MinBoundingBoxHeight", 0, 1, where=where) or 0.0,
                      min_width=number(words, "MinBoundingBoxWidth", 0, 1, where=where) or 0.0,
                      regions=tuple(_region(region, i) for i, region in enumerate(regions)))


def parse_detect_faces(doc: object) -> DetectFaces:
    """A DetectFaces call from its JSON body; AwsError when malformed."""
    doc, image = call_body(doc, "DetectFaces", ("Attributes",))
    attributes = doc.get("Attributes") or ["DEFAULT"]
    if not isinstance(attributes, list) or any(a not in FACE_ATTRIBUTES for a in attributes):
        raise invalid(f"Attributes is a list of {', '.join(FACE_ATTRIBUTES)}")
    return DetectFaces(*image, attributes=tuple(attributes))


def parse_detect_moderation_labels(doc: object) -> DetectModerationLabels:
    """A DetectModerationLabels call from its JSON body; AwsError when malformed.

    HumanLoopConfig is checked and then ignored (no human review loop starts, so the answer has no
    HumanLoopActivationOutput, as when Rekognition's loop is not activated); a ProjectVersion (a custom
    moderation adapter) names nothing this service has.
    """
    doc, image = call_body(doc, "DetectModerationLabels", ("MinConfidence", "HumanLoopConfig", "ProjectVersion"))
    _check_human_loop(doc.get("HumanLoopConfig"))
    if doc.get("ProjectVersion") is not None:
        raise AwsError("ResourceNotFoundException", "this Sightfleet server has no custom moderation adapters; "
                       "leave out ProjectVersion")
    confidence = number(doc, "MinConfidence", 0, 100)
    return DetectModerationLabels(*image, min_confidence=DEFAULT_MODERATION_CONFIDENCE if confidence is None
                                  else confidence)


def _check_human_loop(config: object) -> None:
    loop = structure(config, "HumanLoopConfig", ("HumanLoopName", "FlowDefinitionArn", "DataAttributes"))
    if config is None:
        return
    name, arn = loop.get("HumanLoopName"), loop.get("FlowDefinitionArn")
    if not (isinstance(name, str) and _HUMAN_LOOP_NAME.fullmatch(name) and isinstance(arn, str) and len(arn) <= 256):
        raise invalid("HumanLoopConfig needs HumanLoopName (1 to 63 lowercase letters, digits and hyphens) and "
                      "FlowDefinitionArn")
    data = structure(loop.get("DataAttributes"), "HumanLoopConfig.DataAttributes", ("ContentClassifiers",))
    classifiers = data.get("ContentClassifiers", [])
    allowed = ("FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent")
    if not isinstance(classifiers, list) or any(c not in allowed for c in classifiers):
        raise invalid(f"HumanLoopConfig.DataAttributes.ContentClassifiers is a list of {', '.join(allowed)}")


def _area(polygon: list[Point]) -> float:
    """The area of a simple polygon (shoelace)."""
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1]))) / 2


def _clip(polygon: list[Point], left: float, top: float, right: float, bottom: float) -> list[Point]:
    """The part of polygon inside the rectangle (Sutherland-Hodgman: the rectangle is convex, the polygon need not be)."""
    edges: list[tuple[Callable[[Point], bool], Callable[[Point, Point], Point]]] = [
        (lambda p: p[0] >= left, lambda a, b: _cross_x(a, b, left)),
        (lambda p: p[0] <= right, lambda a, b: _cross_x(a, b, right)),
        (lambda p: p[1] >= top, lambda a, b: _cross_y(a, b, top)),
        (lambda p: p[1] <= bottom, lambda a, b: _cross_y(a, b, bottom))]
    for inside, cross in edges:
        kept: list[Point] = []
        for a, b in zip(polygon[-1:] + polygon[:-1], polygon):
            if inside(b):
                if not inside(a):
                    kept.append(cross(a, b))
                kept.append(b)
            elif inside(a):
                kept.append(cross(a, b))
        polygon = kept
        if not polygon:
            break
    return polygon


def _cross_x(a: Point, b: Point, x: float) -> Point:
    return x, a[1] + (b[1] - a[1]) * (x - a[0]) / (b[0] - a[0])


def _cross_y(a: Point, b: Point, y: float) -> Point:
    return a[0] + (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]), y


def more_than_half_inside(box: dict, regions: tuple[tuple[Point, ...], ...]) -> bool:
    """Whether more than half of box lies in one of the regions (Rekognition's RegionOfInterest rule); True for none."""
    if not regions:
        return True
    left, top, width, height = (float(box.get(k, 0.0)) for k in ("Left", "Top", "Width", "Height"))
    if width <= 0 or height <= 0:
        return False
    return any(_area(_clip(list(region), left, top, left + width, top + height)) > width * height / 2
               for region in regions)


def _box(detection: dict) -> dict:
    return (detection.get("Geometry") or {}).get("BoundingBox") or {}


def _word_kept(word: dict, call: DetectText) -> bool:
    box = _box(word)
    return (float(word.get("Confidence", 0.0)) >= (call.min_confidence or 0.0)
            and float(box.get("Height", 0.0)) >= call.min_height and float(box.get("Width", 0.0)) >= call.min_width
            and more_than_half_inside(box, call.regions))


def _text_detection(found: dict) -> dict:
    geometry = found.get("Geometry") or {}
    shaped = {"DetectedText": str(found["DetectedText"]), "Type": found["Type"], "Id": int(found["Id"])}
    if found.get("ParentId") is not None:
        shaped["ParentId"] = int(found["ParentId"])
    shaped["Confidence"] = float(found.get("Confidence", 0.0))
    shaped["Geometry"] = {"BoundingBox": {k: float(v) for k, v in _box(found).items() if k in _BOX},
                          "Polygon": [{"X": float(p["X"]), "Y": float(p["Y"])} for p in geometry.get("Polygon") or []]}
    return shaped


def text_answer(result: dict, call: DetectText) -> dict:
    """DetectText's answer: the words the filters keep, and the lines that keep at least one word.

    A line with no words at all is kept when more than half of it is in a region of interest.
    """
    found = [d for d in result.get("text_detections") or [] if d.get("Type") in ("LINE", "WORD")]
    words = [d for d in found if d["Type"] == "WORD" and _word_kept(d, call)]
    with_words = {d.get("ParentId") for d in found if d["Type"] == "WORD"}
    parents = {w.get("ParentId") for w in words}
    lines = [d for d in found if d["Type"] == "LINE" and (d["Id"] in parents or (
        d["Id"] not in with_words and more_than_half_inside(_box(d), call.regions)))]
    kept = {id(d) for d in lines + words}
    return {"TextDetections": [_text_detection(d) for d in found if id(d) in kept],
            "TextModelVersion": _version(result, TEXT)}


def _face(found: dict) -> dict:
    shaped = {"BoundingBox": {k: float(v) for k, v in (found.get("BoundingBox") or {}).items() if k in _BOX}}
    shaped["Confidence"] = float(found.get("Confidence", 0.0))
    shaped["Landmarks"] = [{"Type": mark["Type"], "X": float(mark["X"]), "Y": float(mark["Y"])}
                           for mark in found.get("Landmarks") or [] if mark.get("Type") in LANDMARK_TYPES]
    if isinstance(found.get("Pose"), dict):
        shaped["Pose"] = {k: float(v) for k, v in found["Pose"].items() if k in ("Roll", "Yaw", "Pitch")}
    if isinstance(found.get("Quality"), dict):
        shaped["Quality"] = {k: float(v) for k, v in found["Quality"].items() if k in ("Brightness", "Sharpness")}
    return shaped


def faces_answer(result: dict, call: DetectFaces) -> dict:
    """DetectFaces' answer: each face's DEFAULT attributes; no OrientationCorrection (see docs/rekognition.md)."""
    return {"FaceDetails": [_face(face) for face in result.get("face_details") or []]}


def moderation_answer(result: dict, call: DetectModerationLabels) -> dict:
    """DetectModerationLabels' answer: the labels at or above MinConfidence, in the worker's (taxonomy) order."""
    labels = [{"Confidence": float(label["Confidence"]), "Name": str(label["Name"]),
               "ParentName": str(label.get("ParentName") or ""), "TaxonomyLevel": int(label.get("TaxonomyLevel", 1))}
              for label in result.get("moderation_labels") or [] if float(label["Confidence"]) >= call.min_confidence]
    return {"ModerationLabels": labels, "ModerationModelVersion": _version(result, MODERATION)}


def _version(result: dict, feature: str) -> str:
    return str((result.get("model_versions") or {}).get(feature) or "sightfleet-1")


class Operation(NamedTuple):
    """How to read one operation's call and answer it from a SUCCEEDED result."""

    parse: Callable[[object], ImageCall]
    answer: Callable[[dict, ImageCall], dict]


OPERATIONS: dict[str, Operation] = {
    "DetectLabels": Operation(parse_detect_labels, labels_answer),
    "DetectText": Operation(parse_detect_text, text_answer),
    "DetectFaces": Operation(parse_detect_faces, faces_answer),
    "DetectModerationLabels": Operation(parse_detect_moderation_labels, moderation_answer),
}
