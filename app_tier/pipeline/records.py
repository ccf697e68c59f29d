"""The pipeline's settings, its input and its per-image outcome."""
from __future__ import annotations

from dataclasses import dataclass, field

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"


@dataclass(frozen=True)
class PipelineSettings:
    """Everything the pipeline reads from configuration, fixed when the Pipeline is made."""

    min_confidence: float = 55.0      # percent; weaker labels are dropped
    max_labels: int = 10
    thumbnail_size: int = 250         # the thumbnail fits a square box of this side
    max_pixels: int = 50_000_000      # decompression-bomb guard, checked from the header
    image_timeout_s: float = 30.0     # budget of one image's own stages (0 disables)
    # One thread each: a worker instance runs one worker process per core, and threads
    # beyond the core count only fight each other (measured in benchmarks/pipeline.py).
    torch_threads: int = 1
    opencv_threads: int = 1
    annotated_max_side: int = 1024    # longest side of the annotated copy
    # Images per forward pass; 1 means one by one. At one thread neither model gains
    # from larger batches on this CPU (benchmarks/pipeline.py prints the comparison).
    detector_batch_size: int = 1
    classifier_batch_size: int = 1
    classifier_top_k: int = 5         # classifier guesses considered before the confidence cut
    jpeg_quality: int = 85

    def __post_init__(self):
        if not 0 <= self.min_confidence <= 100:
            raise ValueError(f"min_confidence must be within 0-100, not {self.min_confidence}")
        for name in ("max_labels", "thumbnail_size", "max_pixels", "torch_threads", "opencv_threads",
                     "annotated_max_side", "detector_batch_size", "classifier_batch_size",
                     "classifier_top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.image_timeout_s < 0:
            raise ValueError(f"image_timeout_s must not be negative, not {self.image_timeout_s}")


@dataclass(frozen=True)
class ImageInput:
    """One image to process: the caller's id, the raw bytes and the name it was uploaded under."""

    id: str
    data: bytes
    filename: str = ""


@dataclass
class Outcome:
    """What the pipeline made of one image; bytes for the outputs, the rest goes into the result."""

    id: str
    status: str
    error: dict | None = None
    labels: list[dict] = field(default_factory=list)
    top_label: str | None = None
    metadata: dict = field(default_factory=dict)
    thumbnail: bytes | None = None
    thumbnail_content_type: str | None = None
    annotated: bytes | None = None
    annotated_content_type: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_result_fields(self) -> dict:
        """The JSON-serialisable part of the outcome, as stored in the result."""
        return {"status": self.status, "error": self.error, "labels": self.labels,
                "top_label": self.top_label, "metadata": self.metadata, "timings": self.timings}
