"""The app tier's recognition pipeline: format check, EXIF, thumbnail, detection, classification, annotation.

Pure image processing, no AWS: the worker feeds it bytes and stores what comes out.
`Pipeline` is imported lazily, so importing the records (as app_tier.jobs does) stays free of torch and OpenCV.
"""
from app_tier.pipeline.errors import (
    CORRUPT_IMAGE, IMAGE_TOO_LARGE, INTERNAL_ERROR, TIMEOUT, UNSUPPORTED_FORMAT, StageError,
)
from app_tier.pipeline.records import FAILED, SUCCEEDED, ImageInput, Outcome, PipelineSettings

__all__ = [
    "CORRUPT_IMAGE", "FAILED", "IMAGE_TOO_LARGE", "INTERNAL_ERROR", "SUCCEEDED", "TIMEOUT",
    "UNSUPPORTED_FORMAT", "ImageInput", "Outcome", "Pipeline", "PipelineSettings", "StageError",
]


def __getattr__(name: str):
    if name == "Pipeline":
        from app_tier.pipeline.pipeline import Pipeline
        return Pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
