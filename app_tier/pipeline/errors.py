"""Failure codes of the pipeline and the exception that carries one out of a stage."""
from __future__ import annotations

UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
CORRUPT_IMAGE = "CORRUPT_IMAGE"
IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
TIMEOUT = "TIMEOUT"
INTERNAL_ERROR = "INTERNAL_ERROR"
# The job asked for a feature whose model this worker could not load (its log says why, once).
FEATURE_UNAVAILABLE = "FEATURE_UNAVAILABLE"

ERROR_CODES = (UNSUPPORTED_FORMAT, CORRUPT_IMAGE, IMAGE_TOO_LARGE, TIMEOUT, INTERNAL_ERROR, FEATURE_UNAVAILABLE)
# Messages quote library exceptions, whose text a hostile file can make long; people need a sentence.
MAX_MESSAGE_CHARS = 1000


class StageError(Exception):
    """A stage gave up on one image: a code from ERROR_CODES and a message for people."""

    def __init__(self, code: str, message: str):
        message = message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS - 3] + "..."
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def as_dict(self) -> dict:
        """The `error` field of a FAILED result."""
        return {"code": self.code, "message": self.message}
