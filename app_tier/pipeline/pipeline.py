"""The recognition pipeline: per-image stages around batched model passes; a bad image fails alone."""
from __future__ import annotations

import copy
import functools
import itertools
import logging
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from app_tier.pipeline import moderation, properties, render
from app_tier.pipeline.decode import Decoded, decode, open_checked
from app_tier.pipeline.errors import INTERNAL_ERROR, UNSUPPORTED_FORMAT, StageError
from app_tier.pipeline.exif import clean_metadata, human_size, read_tags
from sightfleet.formats import HEAD_BYTES, check_head
from app_tier.pipeline.labels import merge_labels, model_version
from app_tier.pipeline.models import Detection, Detector, set_threads
from app_tier.pipeline.runtime import DETECTOR, load_models
from app_tier.pipeline.records import FAILED, SUCCEEDED, ImageInput, Outcome, PipelineSettings
from app_tier.pipeline.stages import OptionalStages
from app_tier.pipeline.timelimit import Budget, charged
from sightfleet.features import FACES, LABELS, MODERATION, PROPERTIES, TEXT
from sightfleet.vocabulary import load_vocabulary

log = logging.getLogger(__name__)


@dataclass
class _Work:
    """One image on its way through the stages."""

    input: ImageInput
    budget: Budget
    metadata: dict
    features: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    decoded: Decoded | None = None
    thumbnail: tuple[bytes, str] | None = None
    detector_input: np.ndarray | None = None
    classifier_input: np.ndarray | None = None
    detections: list[Detection] | None = None
    probabilities: np.ndarray | None = None
    stage_inputs: dict = field(default_factory=dict)     # optional feature -> its model's prepared input
    answers: dict = field(default_factory=dict)          # feature -> its answer
    outcome: Outcome | None = None

    @contextmanager
    def stage(self, name: str):
        """Time a stage into timings[name] (added up if it runs twice) and charge it to the budget."""
        started = time.perf_counter()
        try:
            with charged(self.budget, name):
                yield
        finally:
            self.add_time(name, (time.perf_counter() - started) * 1000)

    def add_time(self, name: str, ms: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + ms

    def fail(self, error: StageError) -> None:
        self.outcome = Outcome(id=self.input.id, status=FAILED, error=error.as_dict(),
                               metadata=self.metadata, timings=self.final_timings())
        log.info("image %s (%r) FAILED %s: %s", self.input.id, self.input.filename, error.code, error.message)

    def final_timings(self) -> dict[str, float]:
        """Stage times in ms, rounded, with their sum as `total`."""
        timings = {name: round(ms, 3) for name, ms in self.timings.items()}
        timings["total"] = round(sum(self.timings.values()), 3)
        return timings


def _empty_metadata(data: bytes) -> dict:
    """Every metadata key, so SUCCEEDED and FAILED results share one schema."""
    return {"created_at": None, "gps": None, "camera_make": None, "camera_model": None,
            "width": None, "height": None, "file_size": len(data), "file_size_human": human_size(len(data)),
            "format": None, "orientation": None}


@contextmanager
def _warnings_logged(work: _Work):
    """Log the warnings a hostile image makes Pillow or exifread emit, instead of letting them change its answer.

    Run with warnings as errors (python -W error, a strict test setting), Pillow's
    DecompressionBombWarning or "Corrupt EXIF data" would otherwise become exceptions and turn
    a well-defined answer (IMAGE_TOO_LARGE, or SUCCEEDED without the broken tag) into
    INTERNAL_ERROR. Used on the calling thread only: warnings.catch_warnings swaps
    process-wide state, and the models thread never enters it.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if caught:
        log.info("image %s: %s warning(s) while processing, the first: %s: %s", work.input.id, len(caught),
                 caught[0].category.__name__, caught[0].message)


@dataclass
class Pending:
    """A chunk prepared by Pipeline.submit whose forward passes are queued or running on the models thread."""

    works: list[_Work]
    models: Future


class Pipeline:
    """Loads both models once; process() and stream() turn images into outcomes in the same order."""

    # Chunks submitted ahead of the one being collected: two absorb a slow decode or a busy core.
    AHEAD = 2

    def __init__(self, settings: PipelineSettings | None = None):
        self.settings = settings or PipelineSettings()
        started = time.perf_counter()
        # The forward passes get a thread of their own, so that the next images are decoded
        # while they run; both models and Pillow/OpenCV release the GIL for their C work.
        # Its first task (_apply_threads) starts it now, at the priority of the thread loading the models.
        self._models = ThreadPoolExecutor(1, thread_name_prefix="models")
        self._apply_threads(self.settings)
        self.detector, self.classifier, self.runtime = load_models(self.settings)
        self.stages = OptionalStages.load(self.settings)
        self.vocabulary = load_vocabulary()
        self.label_model_version = model_version(DETECTOR, self.classifier.MODEL, self.vocabulary)
        # Below the lowest threshold of the detector's labels nothing it finds could be kept.
        self._coco_floor = min(self.vocabulary.labels[n].threshold for n in self.vocabulary.coco.values())
        self._models.submit(self._warm_up).result()
        self.load_seconds = time.perf_counter() - started
        log.info("pipeline models loaded on %s in %.2f s (torch threads %s, OpenCV/OpenVINO threads %s)",
                 self.runtime, self.load_seconds, self.settings.torch_threads, self.settings.opencv_threads)

    def _warm_up(self) -> None:
        """One pass through each model: OpenCV and OpenVINO allocate their buffers on the first forward (3x slower)."""
        blank = np.zeros((Detector.SIDE, Detector.SIDE, 3), np.uint8)
        self.detector.run([blank], 1.0)
        self.classifier.run([self.classifier.prepare(blank)])
        picture = Image.fromarray(blank)
        properties.image_properties(picture)          # builds its colour tables
        for feature in self.stages.loaded:
            self.stages.run(feature, self.stages.prepare(feature, picture))

    def with_settings(self, settings: PipelineSettings) -> Pipeline:
        """A pipeline sharing these loaded models under other settings (thread counts are re-applied)."""
        clone = copy.copy(self)
        clone.settings = settings
        clone._apply_threads(settings)
        return clone

    def _apply_threads(self, settings: PipelineSettings) -> None:
        """Thread counts here and on the models thread (torch reads its count once per thread)."""
        set_threads(settings.torch_threads, settings.opencv_threads)
        self._models.submit(set_threads, settings.torch_threads, settings.opencv_threads).result()

    def process(self, inputs: Sequence[ImageInput]) -> list[Outcome]:
        """Outcomes in input order; never raises for a bad image, and one bad image spoils no other."""
        return list(self.stream(inputs))

    def chunks(self, items: Iterable) -> Iterator[list]:
        """Lists of images for submit(), of the larger model batch size (the last may be shorter), as they arrive."""
        size = max(self.settings.detector_batch_size, self.settings.classifier_batch_size)
        iterator = iter(items)
        while chunk := list(itertools.islice(iterator, size)):
            yield chunk

    def stream(self, inputs: Iterable[ImageInput]) -> Iterator[Outcome]:
        """Outcomes in input order, each as soon as it is ready; the inputs may still be arriving.

        Up to AHEAD chunks are submitted before the oldest is collected, so on two cores the
        models rarely wait for decoding, thumbnails or drawing.
        """
        queued: deque[Pending] = deque()
        for chunk in self.chunks(inputs):
            queued.append(self.submit(chunk))
            if len(queued) > self.AHEAD:
                yield from self.collect(queued.popleft())
        while queued:
            yield from self.collect(queued.popleft())

    def submit(self, inputs: Sequence[ImageInput]) -> Pending:
        """Prepare a chunk here (format, EXIF, decode, thumbnail, model inputs); queue its forward passes."""
        works = [self._prepared(item) for item in inputs]
        return Pending(works, self._models.submit(self._run_models, [w for w in works if w.outcome is None]))

    def collect(self, pending: Pending) -> list[Outcome]:
        """Once a chunk's forward passes are done: merge and annotate each image; outcomes in order."""
        pending.models.result()
        for work in pending.works:
            if work.outcome is None:
                with _warnings_logged(work):
                    self._guarded(work, self._finish)
        return [work.outcome for work in pending.works]

    def _prepared(self, item: ImageInput) -> _Work:
        features = self.settings.default_features if item.features is None else item.features
        work = _Work(item, Budget(self.settings.image_timeout_s), _empty_metadata(item.data or b""), features)
        with _warnings_logged(work):
            self._guarded(work, self._prepare)
        return work

    def _run_models(self, works: list[_Work]) -> None:
        """The label models over the images asking for labels, then each optional stage's, on the models thread."""
        labelled = [w for w in works if LABELS in w.features]
        self._batched(labelled, "detect", self.settings.detector_batch_size, self._detect_batch)
        self._batched([w for w in labelled if w.outcome is None], "classify",
                      self.settings.classifier_batch_size, self._classify_batch)
        for feature in self.stages.loaded:
            for work in works:
                if work.outcome is None and feature in work.stage_inputs:
                    self._guarded(work, functools.partial(self._run_stage, feature))

    def _run_stage(self, feature: str, work: _Work) -> None:
        """One optional stage's model over one image, its time charged to the image (as a model pass is)."""
        self._timed_batch([work], feature, functools.partial(self._stage_answers, feature))

    def _stage_answers(self, feature: str, chunk: list[_Work]) -> None:
        for work in chunk:
            work.answers[feature] = self.stages.run(feature, work.stage_inputs.pop(feature))

    def _guarded(self, work: _Work, step: Callable[[_Work], None]) -> None:
        """Run per-image stages; any failure becomes this image's FAILED outcome."""
        try:
            step(work)
        except StageError as exc:
            work.fail(exc)
        except Exception as exc:  # noqa: BLE001 - a bug on one image must not take down the batch
            log.exception("image %s: unexpected error", work.input.id)
            work.fail(StageError(INTERNAL_ERROR, f"unexpected {type(exc).__name__} while processing: {exc}"))

    def _prepare(self, work: _Work) -> None:
        """Format check, EXIF, one decode, thumbnail, image properties and the inputs of the models asked for."""
        self.stages.check(work.features)        # FEATURE_UNAVAILABLE before any work
        data = work.input.data or b""
        with work.stage("format"):
            fmt = self._check_format(data, work.metadata)
        with work.stage("exif"):
            work.metadata.update(clean_metadata(read_tags(data, fmt)))
        with work.stage("decode"):
            work.decoded = decode(open_checked(data, fmt, self.settings.max_pixels),
                                  self.settings.annotated_max_side)
            self._add_image_facts(work.metadata, work.decoded)
        with work.stage("thumbnail"):
            work.thumbnail = render.thumbnail(work.decoded, self.settings.thumbnail_size,
                                              self.settings.jpeg_quality)
        if LABELS in work.features:
            pixels = np.asarray(work.decoded.rgb)
            with work.stage("detect"):
                work.detector_input = self.detector.prepare(pixels)
            with work.stage("classify"):
                work.classifier_input = self.classifier.prepare(pixels)
        if PROPERTIES in work.features:
            with work.stage(PROPERTIES):
                work.answers[PROPERTIES] = properties.image_properties(work.decoded.rgb)
        for feature in self.stages.loaded:
            if feature in work.features:
                with work.stage(feature):
                    work.stage_inputs[feature] = self.stages.prepare(feature, work.decoded.rgb)

    @staticmethod
    def _check_format(data: bytes, metadata: dict) -> str:
        metadata["format"], reason = check_head(data[:HEAD_BYTES])
        if reason:
            raise StageError(UNSUPPORTED_FORMAT, reason)
        return metadata["format"]

    @staticmethod
    def _add_image_facts(metadata: dict, decoded: Decoded) -> None:
        metadata.update(width=decoded.width, height=decoded.height, format=decoded.format)
        if metadata["orientation"] is None:
            metadata["orientation"] = decoded.orientation

    def _batched(self, works: list[_Work], stage: str, size: int, run: Callable[[list[_Work]], None]) -> None:
        """Run a model over chunks of `size` images; each image is charged an even share of its chunk.

        A chunk that fails is retried one image at a time, so a failure stays with its image.
        """
        for start in range(0, len(works), size):
            chunk = works[start:start + size]
            try:
                self._timed_batch(chunk, stage, run)
            except Exception:  # noqa: BLE001 - isolate the failing image below
                log.exception("%s failed on a batch of %s; retrying one by one", stage, len(chunk))
                for work in chunk:
                    self._guarded(work, lambda w: self._timed_batch([w], stage, run))

    @staticmethod
    def _timed_batch(chunk: list[_Work], stage: str, run: Callable[[list[_Work]], None]) -> None:
        started = time.perf_counter()
        run(chunk)
        share = (time.perf_counter() - started) / len(chunk)
        for work in chunk:
            work.add_time(stage, share * 1000)
            work.budget.spent += share

    def _detect_batch(self, chunk: list[_Work]) -> None:
        floor = max(self.settings.min_confidence, self._coco_floor)
        found = self.detector.run([w.detector_input for w in chunk], floor / 100)
        for work, detections in zip(chunk, found):
            work.detections = detections

    def _classify_batch(self, chunk: list[_Work]) -> None:
        probabilities = self.classifier.run([w.classifier_input for w in chunk])
        for work, row in zip(chunk, probabilities):
            work.probabilities = row

    def _weaker_labels(self, work: _Work, shown: list[dict]) -> list[dict]:
        """The labels down to the stored floor that the vocabulary's thresholds leave out of `shown`."""
        settings = self.settings
        if settings.label_floor >= 100:
            return []
        floor = merge_labels(work.detections, work.probabilities, self.vocabulary, settings.label_floor,
                             settings.stored_max_labels, settings.classifier_top_k, thresholds=False)
        names = {label["Name"] for label in shown}
        return [label for label in floor if label["Name"] not in names]

    def _finish(self, work: _Work) -> None:
        """Merge the labels, draw the annotated copy and make the SUCCEEDED outcome with every answer asked for."""
        settings = self.settings
        labels: list[dict] = []
        weaker: list[dict] = []
        if LABELS in work.features:
            with work.stage("merge"):
                labels = merge_labels(work.detections, work.probabilities, self.vocabulary,
                                      settings.min_confidence, settings.max_labels, settings.classifier_top_k)
                weaker = self._weaker_labels(work, labels)
        answers = work.answers
        with work.stage("annotate"):
            annotated = render.annotate(work.decoded.rgb, labels, settings.jpeg_quality,
                                        answers.get(FACES, []), answers.get(TEXT, []))
        thumbnail, thumbnail_type = work.thumbnail
        nsfw = answers.get(MODERATION)
        work.outcome = Outcome(
            id=work.input.id, status=SUCCEEDED, labels=labels, weaker_labels=weaker,
            top_label=labels[0]["Name"] if labels else None,
            label_model_version=self.label_model_version if LABELS in work.features else None,
            metadata=work.metadata, thumbnail=thumbnail, thumbnail_content_type=thumbnail_type,
            annotated=annotated, annotated_content_type=render.JPEG, timings=work.final_timings(),
            text_detections=answers.get(TEXT, []), face_details=answers.get(FACES, []),
            image_properties=answers.get(PROPERTIES),
            moderation_labels=moderation.moderation_labels(nsfw) if nsfw is not None else [],
            review=moderation.review(nsfw, settings.moderation_threshold, settings.moderation)
            if nsfw is not None else None,
            model_versions=self._model_versions(work.features))
        work.decoded = work.detector_input = work.classifier_input = None   # free the pixels early

    def _model_versions(self, features: tuple[str, ...]) -> dict[str, str]:
        """The model (or method) behind each feature run."""
        known = {LABELS: self.label_model_version, PROPERTIES: properties.VERSION, **self.stages.versions()}
        return {feature: known[feature] for feature in features if feature in known}
