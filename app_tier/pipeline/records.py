"""The pipeline's settings, its input and its per-image outcome."""
from __future__ import annotations

from dataclasses import dataclass, field

from sightfleet.config import CLASSIFIER_MODELS, Settings
from sightfleet.contracts import FAILED, SUCCEEDED
from sightfleet.features import FEATURES, MODERATION_MODES, effective_features, parse_features

# What an image gets when its input names no features: the stack's defaults, as a job without features gets them.
DEFAULT_FEATURES = effective_features(None, None, parse_features(Settings.features), Settings.moderation)

__all__ = ["FAILED", "METADATA_BUDGET_BYTES", "SUCCEEDED", "ImageInput", "Outcome", "PipelineSettings"]

# The most an outcome's metadata may take as JSON (UTF-8), whatever the image says about
# itself: the result row goes to DynamoDB, whose items hold 400 KB at most. The schema is
# fixed (ten keys, GPS a fixed shape) and its only free text, camera make and model, is
# clipped to exif.MAX_TEXT_CHARS, so real metadata stays under 3 KB; tests check the budget
# over the hostile-image corpus and for the longest strings the schema allows.
METADATA_BUDGET_BYTES = 16 * 1024


@dataclass(frozen=True)
class PipelineSettings:
    """Everything the pipeline reads from configuration, fixed when the Pipeline is made."""

    # What the service configures defaults to Settings' own defaults, so the two cannot drift.
    min_confidence: float = Settings.min_confidence  # percent; weaker labels are dropped
    max_labels: int = Settings.max_labels
    # Weaker labels kept beside them for reads that lower MinConfidence (docs/labels.md): down to label_floor
    # percent whatever a label's own threshold, at most stored_max_labels (label_floor 100: none).
    label_floor: float = Settings.label_floor
    stored_max_labels: int = Settings.stored_max_labels
    thumbnail_size: int = Settings.thumbnail_size    # the thumbnail fits a square box of this side
    max_pixels: int = Settings.max_pixels            # decompression-bomb guard, checked from the header
    image_timeout_s: float = Settings.image_timeout_s  # budget of one image's own stages (0 disables)
    # One thread each: a worker instance runs one worker process per core, and threads
    # beyond the core count only fight each other (measured in benchmarks/pipeline.py).
    # opencv_threads is also OpenVINO's INFERENCE_NUM_THREADS; torch_threads serves native only.
    torch_threads: int = Settings.torch_threads
    opencv_threads: int = Settings.torch_threads
    annotated_max_side: int = 1024    # longest side of the annotated copy
    # Images per forward pass; 1 means one by one. At one thread neither model gains
    # from larger batches on this CPU (benchmarks/pipeline.py prints the comparison).
    detector_batch_size: int = 1
    classifier_batch_size: int = 1
    classifier_top_k: int = 5         # classifier guesses considered before the confidence cut
    jpeg_quality: int = 85
    # Runtime of both models (runtime.py): "openvino", falling back to "native" where it cannot load.
    inference: str = Settings.inference
    # OpenVINO's INFERENCE_PRECISION_HINT, "bf16" or "f32" (measured in README.md, Precision); f32 where the
    # CPU has no native bf16.
    inference_precision: str = "bf16"
    # Where the OpenVINO IR and the native TorchScript graph are cached ("": ~/.cache/sightfleet/models).
    model_cache_dir: str = Settings.model_cache_dir
    # The classifier: "efficientnet_lite3" or "efficientnet_lite0" (docs/recognition.md). Lite3 runs on OpenVINO
    # only: the native runtime classifies with Lite0 (and the result's label_model_version says so).
    classifier: str = Settings.classifier
    # The features an ImageInput without its own runs (a job without features: the stack's default, moderation
    # added when the stack moderates), the moderation mode and the score that flags a photo (moderation.py).
    default_features: tuple[str, ...] = DEFAULT_FEATURES
    moderation: str = Settings.moderation
    moderation_threshold: float = Settings.moderation_threshold

    @classmethod
    def from_settings(cls, settings: Settings) -> "PipelineSettings":
        """The pipeline's part of the service settings; one thread count serves torch and OpenCV alike."""
        return cls(min_confidence=settings.min_confidence, max_labels=settings.max_labels,
                   label_floor=settings.label_floor, stored_max_labels=settings.stored_max_labels,
                   thumbnail_size=settings.thumbnail_size, max_pixels=settings.max_pixels,
                   image_timeout_s=settings.image_timeout_s, torch_threads=settings.torch_threads,
                   opencv_threads=settings.torch_threads, inference=settings.inference,
                   model_cache_dir=settings.model_cache_dir, classifier=settings.classifier,
                   default_features=effective_features(None, None, settings.default_features, settings.moderation),
                   moderation=settings.moderation, moderation_threshold=settings.moderation_threshold)

    def __post_init__(self):
        if not 0 <= self.min_confidence <= 100:
            raise ValueError(f"min_confidence must be within 0-100, not {self.min_confidence}")
        for name in ("max_labels", "thumbnail_size", "max_pixels", "torch_threads", "opencv_threads",
                     "annotated_max_side", "detector_batch_size", "classifier_batch_size",
                     "classifier_top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.inference not in ("openvino", "native"):
            raise ValueError(f"inference must be openvino or native, not {self.inference!r}")
        if self.inference_precision not in ("bf16", "f32"):
            raise ValueError(f"inference_precision must be bf16 or f32, not {self.inference_precision!r}")
        if self.classifier not in CLASSIFIER_MODELS:
            raise ValueError(f"classifier must be one of {', '.join(CLASSIFIER_MODELS)}, not {self.classifier!r}")
        if self.image_timeout_s < 0:
            raise ValueError(f"image_timeout_s must not be negative, not {self.image_timeout_s}")
        if not set(self.default_features) <= set(FEATURES):
            raise ValueError(f"default_features must be among {', '.join(FEATURES)}, not {self.default_features!r}")
        if self.moderation not in MODERATION_MODES:
            raise ValueError(f"moderation must be one of {', '.join(MODERATION_MODES)}, not {self.moderation!r}")
        if not 0 <= self.moderation_threshold <= 100:
            raise ValueError(f"moderation_threshold must be within 0-100, not {self.moderation_threshold}")


@dataclass(frozen=True)
class ImageInput:
    """One image to process: the caller's id, the raw bytes, the name it was uploaded under and the features
    its job asks for (None: the pipeline's default_features)."""

    id: str
    data: bytes
    filename: str = ""
    features: tuple[str, ...] | None = None


@dataclass
class Outcome:
    """What the pipeline made of one image; bytes for the outputs, the rest goes into the result."""

    id: str
    status: str
    error: dict | None = None
    labels: list[dict] = field(default_factory=list)
    weaker_labels: list[dict] = field(default_factory=list)   # not shown unless a read lowers MinConfidence
    top_label: str | None = None
    label_model_version: str | None = None
    metadata: dict = field(default_factory=dict)
    thumbnail: bytes | None = None
    thumbnail_content_type: str | None = None
    annotated: bytes | None = None
    annotated_content_type: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # The other features' answers in Rekognition's shapes (sightfleet/features.py RESULT_FIELDS); empty when
    # not asked for; review: moderation's verdict ({"flagged": bool, "held": bool}), None when not run.
    text_detections: list[dict] = field(default_factory=list)
    face_details: list[dict] = field(default_factory=list)
    moderation_labels: list[dict] = field(default_factory=list)
    image_properties: dict | None = None
    review: dict | None = None
    model_versions: dict[str, str] = field(default_factory=dict)

    def to_result_fields(self) -> dict:
        """The JSON-serialisable part of the outcome, as stored in the result."""
        return {"status": self.status, "error": self.error, "labels": self.labels, "weaker_labels": self.weaker_labels,
                "top_label": self.top_label, "label_model_version": self.label_model_version,
                "metadata": self.metadata, "timings": self.timings, "text_detections": self.text_detections,
                "face_details": self.face_details, "moderation_labels": self.moderation_labels,
                "image_properties": self.image_properties, "review": self.review,
                "model_versions": self.model_versions}
