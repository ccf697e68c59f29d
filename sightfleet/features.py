"""What a job asks the worker to find: Rekognition's questions in this API's words, and the moderation modes.

A job names its features (`labels`, `text`, `faces`, `properties`, `moderation`); each is a stage of the
worker's pipeline whose answer goes into the result under Rekognition's own field shapes (RESULT_FIELDS).
What a photo gets when its upload names none: the account's default, else the stack's (Settings.features).
Moderation is a stack setting (off, flag, hold) rather than a caller's choice: when it is on, every job runs it.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

LABELS, TEXT, FACES, PROPERTIES, MODERATION = "labels", "text", "faces", "properties", "moderation"
FEATURES = (LABELS, TEXT, FACES, PROPERTIES, MODERATION)
# The stack's default when Settings.features is not set: the stages cheap enough for every photo
# (their CPU per image is measured by benchmarks/pipeline.py and stated in docs/recognition.md).
DEFAULT_FEATURES = (LABELS, FACES, PROPERTIES)
# Where each feature's answer is in a result document, in Rekognition's shapes (labels: `labels`).
RESULT_FIELDS = {LABELS: "labels", TEXT: "text_detections", FACES: "face_details",
                 PROPERTIES: "image_properties", MODERATION: "moderation_labels"}
# Settings.moderation: off (not run unless asked), flag (run on every photo, labels recorded),
# hold (as flag, and a flagged photo stays out of galleries and search until an admin releases it).
MODERATION_OFF, MODERATION_FLAG, MODERATION_HOLD = "off", "flag", "hold"
MODERATION_MODES = (MODERATION_OFF, MODERATION_FLAG, MODERATION_HOLD)
MAX_FEATURES_CHARS = 200


def parse_features(value: str | Iterable[str]) -> tuple[str, ...]:
    """Features from "text,faces" or a list, deduplicated in FEATURES' order; ValueError naming what is wrong."""
    if isinstance(value, str):
        if len(value) > MAX_FEATURES_CHARS:
            raise ValueError(f"features is at most {MAX_FEATURES_CHARS} characters")
        parts = [part.strip().lower() for part in value.split(",")]
    else:
        parts = [str(part).strip().lower() for part in value]
    parts = [part for part in parts if part]
    unknown = sorted(set(parts) - set(FEATURES))
    if unknown:
        shown = ", ".join(repr(part[:40]) for part in unknown[:5])
        raise ValueError(f"unknown feature(s) {shown}: choose from {', '.join(FEATURES)}")
    if not parts:
        raise ValueError(f"name at least one feature of {', '.join(FEATURES)}")
    return tuple(feature for feature in FEATURES if feature in parts)


def effective_features(requested: Iterable[str] | None, account_default: Iterable[str] | None,
                       stack_default: Iterable[str], moderation_mode: str) -> tuple[str, ...]:
    """The features one job runs: the request's, else the account's default, else the stack's; plus
    moderation whenever the stack moderates (a caller cannot opt out of it)."""
    chosen = set(requested or account_default or stack_default)
    if moderation_mode != MODERATION_OFF:
        chosen.add(MODERATION)
    return tuple(feature for feature in FEATURES if feature in chosen)


def stored_features(value: object) -> tuple[str, ...] | None:
    """A stored default (an account item's default_features) as features; None when unset or unreadable."""
    try:
        return parse_features(list(value)) if value else None  # type: ignore[call-overload]
    except (ValueError, TypeError):
        log.warning("stored default features %r are not readable; using the stack's", value)
        return None
