"""The app tier's recognition pipeline: format check, EXIF, thumbnail, detection, classification, annotation.

Pure image processing, no AWS: the worker feeds it bytes and stores what comes out.
`Pipeline` is imported lazily, so `app_tier.pipeline.formats` stays free of torch and OpenCV.
"""
from app_tier.pipeline.errors import (
    CORRUPT_IMAGE, ERROR_CODES, IMAGE_TOO_LARGE, INTERNAL_ERROR, TIMEOUT, UNSUPPORTED_FORMAT, StageError,
)
from sightfleet.formats import sniff_format, unsupported_message
from app_tier.pipeline.records import FAILED, SUCCEEDED, ImageInput, Outcome, PipelineSettings

__all__ = [
    "CORRUPT_IMAGE", "ERROR_CODES", "FAILED", "IMAGE_TOO_LARGE", "INTERNAL_ERROR", "SUCCEEDED", "TIMEOUT",
    "UNSUPPORTED_FORMAT", "ImageInput", "Outcome", "Pipeline", "PipelineSettings", "StageError",
    "sniff_format", "unsupported_message",
]


def __getattr__(name: str):
    if name == "Pipeline":
        from app_tier.pipeline.pipeline import Pipeline
        return Pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
