"""Rekognition's AWS JSON 1.1 protocol: what every call shares, and reading DetectLabels and writing its answer.

The shapes and limits follow botocore's service model for rekognition 2016-06-27 (shipped with
botocore); the tests check every answer against its output shape, strictly. The other operations are
in web_tier/rekognition/questions.py, on the helpers here; pure functions throughout.
"""
from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field

from sightfleet.features import LABELS, PROPERTIES

SERVICE = "rekognition"
TARGET_PREFIX = "RekognitionService."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_IMAGE_BYTES = 5 * 1024 * 1024                 # Rekognition's limit for Image.Bytes
MAX_BODY_BYTES = 4 * MAX_IMAGE_BYTES // 3 + 64 * 1024   # the image in base64 and the rest of the call
ANSWERED = ("DetectLabels", "DetectText", "DetectFaces", "DetectModerationLabels")
DEFAULT_MIN_CONFIDENCE = 55.0                     # Rekognition's default
DEFAULT_DOMINANT_COLORS = 10                      # Rekognition's default MaxDominantColors (at most 20)
GENERAL_LABELS, IMAGE_PROPERTIES = "GENERAL_LABELS", "IMAGE_PROPERTIES"
_FILTER_KEYS = ("LabelInclusionFilters", "LabelExclusionFilters",
                "LabelCategoryInclusionFilters", "LabelCategoryExclusionFilters")
_FILTER_RE = re.compile(r"^[A-Za-z0-9àâèçñó'\-_(). ]{0,50}$")
_S3_KEYS = {"Bucket": (3, 255), "Name": (1, 1024), "Version": (1, 1024)}
# This service's error codes (and werkzeug's) as Rekognition's exceptions; HTTP 400 unless said.
_AWS_ERRORS = {
    "UNAUTHENTICATED": ("MissingAuthenticationTokenException", 403),
    "BAD_CREDENTIALS": ("UnrecognizedClientException", 403),
    "FORBIDDEN": ("AccessDeniedException", 400),
    "RATE_LIMITED": ("ThrottlingException", 400),
    # Not LimitExceededException, which botocore retries as throttling: a full quota does not clear by waiting.
    "QUOTA_EXCEEDED": ("ServiceQuotaExceededException", 400),
    "TOO_LARGE": ("ImageTooLargeException", 400),
    "IMAGE_TOO_LARGE": ("ImageTooLargeException", 400),
    "REQUEST_TOO_LARGE": ("ImageTooLargeException", 400),
    "UNSUPPORTED_FORMAT": ("InvalidImageFormatException", 400),
    "CORRUPT_IMAGE": ("InvalidImageFormatException", 400),
    "EMPTY_FILE": ("InvalidImageFormatException", 400),
    "UNAVAILABLE": ("InternalServerError", 500),
}
# A FAILED result's code as the exception Rekognition raises for it; anything else is the server's fault.
_FAILED_AS = {"UNSUPPORTED_FORMAT": ("InvalidImageFormatException", 400),
              "CORRUPT_IMAGE": ("InvalidImageFormatException", 400),
              "IMAGE_TOO_LARGE": ("ImageTooLargeException", 400),
              # The worker lacks the model a feature needs: not the caller's fault, and no retry mends it.
              "FEATURE_UNAVAILABLE": ("UnsupportedOperationException", 400)}
_PASSED_THROUGH = {"IncompleteSignatureException": 400, "InvalidSignatureException": 403,
                   "UnrecognizedClientException": 403, "MissingAuthenticationTokenException": 403}


class AwsError(Exception):
    """An answer in the protocol's error shape: `{"__type": ..., "message": ...}` with its HTTP status."""

    def __init__(self, aws_type: str, message: str, status: int = 400):
        super().__init__(message)
        self.aws_type, self.message, self.status = aws_type, message, status

    def body(self) -> dict:
        return {"__type": self.aws_type, "message": self.message}


def as_aws_error(status: int, code: str, message: str) -> AwsError:
    """This service's error (status, code) as the Rekognition exception a client's SDK understands."""
    if code in _PASSED_THROUGH:
        return AwsError(code, message, _PASSED_THROUGH[code])
    if code in _AWS_ERRORS:
        aws_type, aws_status = _AWS_ERRORS[code]
        return AwsError(aws_type, message, aws_status)
    if status >= 500:
        return AwsError("InternalServerError", message, 500)
    return AwsError("AccessDeniedException" if status == 403 else "InvalidParameterException", message, 400)


def failed_as_aws_error(error: dict | None) -> AwsError:
    """A FAILED result's error ({"code", "message"}) as the exception Rekognition raises for it."""
    error = error or {}
    aws_type, status = _FAILED_AS.get(error.get("code"), ("InternalServerError", 500))
    return AwsError(aws_type, str(error.get("message") or "recognition failed"), status)


@dataclass(frozen=True)
class LabelFilters:
    """DetectLabels' Settings.GeneralLabels: names and categories to keep or drop (case-insensitive)."""

    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    include_categories: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ImageCall:
    """What every call names: its image, as bytes or as an object of this stack."""

    image_bytes: bytes | None = None
    s3_bucket: str | None = None
    s3_key: str | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """The worker's stages this call needs (sightfleet/features.py), in FEATURES order."""
        raise NotImplementedError


@dataclass(frozen=True)
class DetectLabels(ImageCall):
    """One DetectLabels call: the image and what to answer (labels, image properties or both)."""

    max_labels: int | None = None
    min_confidence: float | None = None   # None: not given (Rekognition's default, and the vocabulary's thresholds)
    filters: LabelFilters = field(default_factory=LabelFilters)
    general_labels: bool = True
    image_properties: bool = False
    max_dominant_colors: int = DEFAULT_DOMINANT_COLORS

    @property
    def features(self) -> tuple[str, ...]:
        return (LABELS,) * self.general_labels + (PROPERTIES,) * self.image_properties


def operation_of(target: str | None) -> str:
    """The operation an X-Amz-Target names; AwsError when it names none this service answers."""
    if not target or not target.startswith(TARGET_PREFIX):
        raise AwsError("UnknownOperationException", "send X-Amz-Target: RekognitionService.<Operation>")
    operation = target[len(TARGET_PREFIX):]
    if operation not in ANSWERED:
        raise AwsError("UnsupportedOperationException", f"this Sightfleet server does not answer {operation!r}; it "
                       f"answers {', '.join(ANSWERED)}")
    return operation


def invalid(message: str) -> AwsError:
    """Rekognition's answer to a parameter its model does not allow."""
    return AwsError("InvalidParameterException", message)


def number(doc: dict, name: str, low: float, high: float, integer: bool = False, where: str = ""):
    """doc[name] checked against its bounds (None when absent); `where` prefixes the name in the message."""
    value = doc.get(name)
    if value is None:
        return None
    is_number = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not is_number or not math.isfinite(value) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise invalid(f"{where}{name} must be {kind} from {low:g} to {high:g}")
    return value if integer else float(value)


def structure(value: object, where: str, allowed: tuple[str, ...]) -> dict:
    """value as a JSON object with no member but those allowed ({} when absent); InvalidParameterException else."""
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - set(allowed):
        raise invalid(f"{where} takes {', '.join(allowed)}")
    return value


def call_body(doc: object, operation: str, allowed: tuple[str, ...]) -> tuple[dict, tuple]:
    """A call's body, checked to have only the operation's members, and its Image as (bytes, bucket, key)."""
    if not isinstance(doc, dict):
        raise AwsError("SerializationException", "the body must be a JSON object")
    unknown = set(doc) - {"Image", *allowed}
    if unknown:
        raise invalid(f"{operation} does not take {', '.join(sorted(unknown))}")
    return doc, _image(doc)


def _names(doc: dict, name: str) -> frozenset[str]:
    values = doc.get(name, [])
    if not isinstance(values, list) or len(values) > 100:
        raise invalid(f"Settings.GeneralLabels.{name} must be a list of at most 100 names")
    if not all(isinstance(v, str) and _FILTER_RE.match(v) for v in values):
        raise invalid(f"Settings.GeneralLabels.{name}: each name is at most 50 letters, digits, spaces or '-_().")
    return frozenset(v.strip().lower() for v in values)


def _filters(settings: dict) -> LabelFilters:
    general = structure(settings.get("GeneralLabels"), "Settings.GeneralLabels", _FILTER_KEYS)
    return LabelFilters(*(_names(general, key) for key in _FILTER_KEYS))


def _dominant_colors(settings: dict) -> int:
    properties = structure(settings.get("ImageProperties"), "Settings.ImageProperties", ("MaxDominantColors",))
    found = number(properties, "MaxDominantColors", 0, 20, integer=True, where="Settings.ImageProperties.")
    return DEFAULT_DOMINANT_COLORS if found is None else found


def _features(doc: dict) -> tuple[bool, bool]:
    """Whether the call asks for GENERAL_LABELS and for IMAGE_PROPERTIES (GENERAL_LABELS alone when not said)."""
    features = doc.get("Features") or [GENERAL_LABELS]
    if not isinstance(features, list) or len(features) > 2 or \
            any(f not in (GENERAL_LABELS, IMAGE_PROPERTIES) for f in features):
        raise invalid("Features is a list of GENERAL_LABELS and IMAGE_PROPERTIES")
    return GENERAL_LABELS in features, IMAGE_PROPERTIES in features


def _image(doc: dict) -> tuple[bytes | None, str | None, str | None]:
    image = doc.get("Image")
    if not isinstance(image, dict) or len(set(image) & {"Bytes", "S3Object"}) != 1 or \
            set(image) - {"Bytes", "S3Object"}:
        raise invalid("Image must have exactly one of Bytes or S3Object")
    if "Bytes" in image:
        return _image_bytes(image["Bytes"]), None, None
    s3 = image["S3Object"]
    if not isinstance(s3, dict) or set(s3) - set(_S3_KEYS) or not {"Bucket", "Name"} <= set(s3):
        raise invalid("Image.S3Object needs Bucket and Name (and may have Version)")
    for key, (low, high) in _S3_KEYS.items():
        if key in s3 and not (isinstance(s3[key], str) and low <= len(s3[key]) <= high):
            raise invalid(f"Image.S3Object.{key} must be a string of {low} to {high} characters")
    return None, s3["Bucket"], s3["Name"]


def _image_bytes(encoded: object) -> bytes:
    if not isinstance(encoded, str) or not encoded:
        raise invalid("Image.Bytes must be the image, base64-encoded")
    if len(encoded) > 4 * math.ceil(MAX_IMAGE_BYTES / 3):
        raise AwsError("ImageTooLargeException", f"Image.Bytes is over {MAX_IMAGE_BYTES // 2**20} MB")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Image.Bytes is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise AwsError("ImageTooLargeException", f"Image.Bytes is over {MAX_IMAGE_BYTES // 2**20} MB")
    return data


def parse_detect_labels(doc: object) -> DetectLabels:
    """A DetectLabels call from its JSON body; AwsError (InvalidParameterException, ...) when malformed."""
    doc, image = call_body(doc, "DetectLabels", ("MaxLabels", "MinConfidence", "Features", "Settings"))
    general, properties = _features(doc)
    settings = structure(doc.get("Settings"), "Settings", ("GeneralLabels", "ImageProperties"))
    return DetectLabels(*image, max_labels=number(doc, "MaxLabels", 0, 2**31 - 1, integer=True),
                        min_confidence=number(doc, "MinConfidence", 0, 100), filters=_filters(settings),
                        general_labels=general, image_properties=properties,
                        max_dominant_colors=_dominant_colors(settings))


def _named(values: object) -> list[dict]:
    """Parents, Aliases or Categories as [{"Name": ...}], whether stored as names or as such dicts."""
    names = [v.get("Name") if isinstance(v, dict) else v for v in (values or [])]
    return [{"Name": name} for name in names if isinstance(name, str) and name]


def _instance(found: dict) -> dict:
    box = found.get("BoundingBox") or {}
    return {"BoundingBox": {k: float(box[k]) for k in ("Width", "Height", "Left", "Top") if k in box},
            "Confidence": float(found.get("Confidence", 0.0))}


def rekognition_label(label: dict) -> dict:
    """A stored label in exactly DetectLabels' Label shape (fields of this service's own left out)."""
    return {"Name": label["Name"], "Confidence": float(label["Confidence"]),
            "Instances": [_instance(i) for i in label.get("Instances") or []],
            "Parents": _named(label.get("Parents")), "Aliases": _named(label.get("Aliases")),
            "Categories": _named(label.get("Categories"))}


def _kept(label: dict, call: DetectLabels) -> bool:
    name = label["Name"].lower()
    categories = {c["Name"].lower() for c in label["Categories"]}
    wanted = call.filters
    floor = DEFAULT_MIN_CONFIDENCE if call.min_confidence is None else call.min_confidence
    return (label["Confidence"] >= floor
            and (not wanted.include or name in wanted.include)
            and name not in wanted.exclude
            and (not wanted.include_categories or bool(categories & wanted.include_categories))
            and not categories & wanted.exclude_categories)


def labels_answer(result: dict, call: DetectLabels) -> dict:
    """DetectLabels' answer for a SUCCEEDED result: its labels, filtered and ordered as Rekognition does, and the
    image's properties when asked (Labels is empty when only IMAGE_PROPERTIES is)."""
    answer = {"Labels": _labels(result, call) if call.general_labels else [],
              "LabelModelVersion": str(result.get("label_model_version") or "sightfleet-1")}
    if call.image_properties:
        answer["ImageProperties"] = image_properties(result.get("image_properties") or {}, call.max_dominant_colors)
    return answer


def _labels(result: dict, call: DetectLabels) -> list[dict]:
    # A MinConfidence given replaces the vocabulary's per-label thresholds: the labels they left out come back.
    stored = (result.get("labels") or []) + ((result.get("weaker_labels") or []) if call.min_confidence is not None
                                            else [])
    strongest: dict[str, dict] = {}
    for label in stored:
        if label["Name"] not in strongest or label["Confidence"] > strongest[label["Name"]]["Confidence"]:
            strongest[label["Name"]] = label
    labels = [rekognition_label(label) for label in strongest.values()]
    labels = sorted((label for label in labels if _kept(label, call)), key=lambda label: -label["Confidence"])
    return labels if call.max_labels is None else labels[:call.max_labels]


_QUALITY = ("Brightness", "Sharpness", "Contrast")
_COLOR_INTS, _COLOR_STRINGS = ("Red", "Green", "Blue"), ("HexCode", "CSSColor", "SimplifiedColor")


def _colors(colors: object, most: int) -> list[dict]:
    """At most `most` dominant colors (the stage lists them largest first), in DominantColor's shape."""
    return [{**{k: int(color[k]) for k in _COLOR_INTS if k in color},
             **{k: str(color[k]) for k in _COLOR_STRINGS if k in color},
             **({"PixelPercent": float(color["PixelPercent"])} if "PixelPercent" in color else {})}
            for color in list(colors or [])[:most] if isinstance(color, dict)]


def _part(stored: dict, most: int) -> dict:
    """Quality and DominantColors of the image, or of its foreground or background."""
    part = {"Quality": {k: float(v) for k, v in (stored.get("Quality") or {}).items() if k in _QUALITY}}
    if "DominantColors" in stored:
        part["DominantColors"] = _colors(stored["DominantColors"], most)
    return part


def image_properties(stored: dict, most: int) -> dict:
    """A result's image_properties in exactly DetectLabels' ImageProperties shape, with at most `most` colors each."""
    answer = _part(stored, most)
    for region in ("Foreground", "Background"):
        if isinstance(stored.get(region), dict):
            answer[region] = _part(stored[region], most)
    return answer
