"""The inference runtime setting, the IR cache (one conversion with several workers at once) and the native fallback."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app_tier.pipeline import PipelineSettings
from app_tier.pipeline import models, runtime
from app_tier.pipeline.models import NativeClassifier, NativeDetector
from sightfleet.config import ConfigError, Settings
from tests.pipeline_fixtures import photo

REPO = Path(__file__).resolve().parents[1]

# A worker's cache use: wait for the start signal, then ask for the classifier's IR (converting it if missing).
CONVERT_WHEN_TOLD = """
import logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
from app_tier.pipeline import runtime
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
print(runtime.cached_ir(runtime.CLASSIFIER, Path(sys.argv[1])))
"""


def test_settings_choose_the_runtime():
    assert Settings.from_env({}).inference == "openvino"
    assert Settings.from_env({"SIGHTFLEET_INFERENCE": "native"}).inference == "native"
    assert PipelineSettings.from_settings(Settings(inference="native")).inference == "native"
    with pytest.raises(ConfigError, match="SIGHTFLEET_INFERENCE"):
        Settings.from_env({"SIGHTFLEET_INFERENCE": "tensorrt"})
    with pytest.raises(ValueError, match="inference_precision"):
        PipelineSettings(inference_precision="int8")


def test_settings_choose_the_cache_folder():
    assert Settings.from_env({}).model_cache_dir == "" and runtime.cache_dir("") == runtime.DEFAULT_CACHE_DIR
    settings = Settings.from_env({"SIGHTFLEET_MODEL_CACHE_DIR": "/var/lib/sightfleet/models"})
    assert PipelineSettings.from_settings(settings).model_cache_dir == "/var/lib/sightfleet/models"
    assert runtime.cache_dir("~/models") == Path.home() / "models"


@pytest.mark.parametrize("package", ["openvino", "torch"])
def test_cache_key_names_every_version(package):
    key = runtime.cache_key(package)
    for name in (package, *runtime.MODEL_PACKAGES):
        assert name in key
    assert f"conversion-{runtime.CONVERSION}" in key


def test_two_workers_starting_at_once_convert_once(tmp_path):
    """Both get the same whole IR; only one converts (the other waits on the lock); no temporary folder is left."""
    folder, go = tmp_path / "models", tmp_path / "go"
    stale = folder / runtime.cache_key() / f".{runtime.CLASSIFIER}-left-by-a-crash"
    stale.mkdir(parents=True)
    (stale / "model.xml").write_text("half an IR")
    workers = [subprocess.Popen([sys.executable, "-c", CONVERT_WHEN_TOLD, str(folder), str(go)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)                 # both have imported and are polling for the signal
    go.touch()
    results = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert sum(err.count("converting efficientnet_lite0") for _, err in results) == 1, results
    xml = Path(paths.pop())
    assert xml.stat().st_size > 0 and xml.with_suffix(".bin").stat().st_size > 10_000_000
    assert not list(xml.parent.parent.glob(".*-*")), "a temporary folder was left behind"
    import openvino
    model_input = openvino.Core().read_model(str(xml)).inputs[0]          # one RGB uint8 image, scaled in the IR
    assert model_input.get_partial_shape() == [1, 224, 224, 3] and model_input.get_element_type() == openvino.Type.u8


@pytest.fixture
def fallback_not_yet_logged(monkeypatch):
    monkeypatch.setattr(runtime, "_fallback_logged", False)


def test_a_broken_ir_falls_back_to_native_and_says_so_once(tmp_path, caplog, fallback_not_yet_logged):
    entry = tmp_path / runtime.cache_key() / runtime.DETECTOR
    entry.mkdir(parents=True)
    (entry / "model.xml").write_text("<net>not an IR</net>")
    settings = PipelineSettings(model_cache_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="app_tier.pipeline.runtime"):
        for _ in range(2):
            detector, classifier, used = runtime.load_models(settings)
            assert used == "native"
            assert isinstance(detector, NativeDetector) and isinstance(classifier, NativeClassifier)
    assert caplog.text.count("falling back to the native runtime") == 1


def test_no_openvino_falls_back_to_native(monkeypatch, caplog, fallback_not_yet_logged):
    monkeypatch.setitem(sys.modules, "openvino", None)      # import openvino now raises ImportError
    with caplog.at_level(logging.WARNING, logger="app_tier.pipeline.runtime"):
        *_, used = runtime.load_models(PipelineSettings())
    assert used == "native" and "openvino is not importable" in caplog.text


def test_native_asked_for_is_native_without_warning(caplog, fallback_not_yet_logged):
    with caplog.at_level(logging.WARNING, logger="app_tier.pipeline.runtime"):
        *_, used = runtime.load_models(PipelineSettings(inference="native"))
    assert used == "native" and not caplog.text


def test_an_openvino_worker_never_imports_torch(tmp_path):
    """The default pipeline in a fresh process, with the IR in the cache, leaves torch unimported."""
    for name in runtime.CONVERTERS:                         # converting (here, if not yet done) needs torch
        runtime.cached_ir(name, runtime.cache_dir())
    code = ("import sys; from app_tier.pipeline import Pipeline, PipelineSettings; p = Pipeline(PipelineSettings()); "
            "print(p.runtime, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["openvino", "False"], out.stderr


@pytest.fixture
def traces(monkeypatch) -> list:
    """Each building of the eager classifier, which tracing starts with, appends to the list."""
    built, build = [], models.load_efficientnet
    monkeypatch.setattr(models, "load_efficientnet", lambda: built.append(1) or build())
    return built


def test_a_native_worker_traces_the_classifier_once(tmp_path, traces):
    """The first start traces and caches the frozen graph; the next loads it, and it computes what tracing gives."""
    settings = PipelineSettings(inference="native", model_cache_dir=str(tmp_path))
    _, first, _ = runtime.load_models(settings)
    assert len(traces) == 1
    _, second, _ = runtime.load_models(settings)
    assert len(traces) == 1, "the second start traced again"
    assert (tmp_path / runtime.cache_key("torch") / runtime.TORCHSCRIPT / "model.pt").stat().st_size > 10_000_000
    cat = first.prepare(np.asarray(photo("chelsea")))
    np.testing.assert_allclose(second.run([cat]), NativeClassifier().run([cat]), atol=1e-6)
    assert len(traces) == 2


def test_a_damaged_torchscript_graph_is_traced_in_memory(tmp_path, traces, caplog):
    entry = tmp_path / runtime.cache_key("torch") / runtime.TORCHSCRIPT
    entry.mkdir(parents=True)
    (entry / "model.pt").write_bytes(b"half a graph")
    with caplog.at_level(logging.WARNING, logger="app_tier.pipeline.runtime"):
        classifier = runtime.native_classifier(tmp_path)
    assert "unreadable" in caplog.text and len(traces) == 1
    assert classifier.run([classifier.prepare(np.asarray(photo("coffee")))]).shape == (1, 1000)


def test_an_unusable_cache_folder_means_tracing_in_memory(tmp_path, traces, caplog):
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="app_tier.pipeline.runtime"):
        classifier = runtime.native_classifier(blocked / "models")
    assert "tracing it in memory" in caplog.text and len(traces) == 1
    assert isinstance(classifier, NativeClassifier)


def pbtxt_detection_output() -> dict[str, str]:
    """The attributes of the DetectionOutput layer in the package's pbtxt (what OpenCV DNN runs), as text."""
    text = (models.detect_models_dir() / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt").read_text()
    layer = text[text.index('op: "DetectionOutput"'):]
    return dict(re.findall(r'key: "(\w+)"\s*value \{\s*\w+: "?([\w.]+)"?', layer))


def test_the_detector_ir_decodes_boxes_as_the_native_runtime_does():
    """The IR's DetectionOutput has the pbtxt's attributes, so the two runtimes decode and suppress alike."""
    import openvino
    native = pbtxt_detection_output()
    ir = openvino.Core().read_model(str(runtime.cached_ir(runtime.DETECTOR, runtime.cache_dir())))
    assert not [op for op in ir.get_ordered_ops() if op.get_type_name() == "Loop"], "the graph's loops are back"
    decoder, = [op for op in ir.get_ordered_ops() if op.get_type_name() == "DetectionOutput"]
    ours = decoder.get_attributes()
    assert ours["code_type"] == f"caffe.PriorBoxParameter.{native['code_type']}"
    assert ours["share_location"] == (native["share_location"] == "true")
    for name in ("background_label_id", "top_k", "nms_threshold", "confidence_threshold"):
        assert ours[name] == pytest.approx(float(native[name])), name
    assert ours["keep_top_k"] == [int(native["keep_top_k"])]
    boxes, scores, _ = (port.get_partial_shape()[1].get_length() for port in decoder.inputs())
    assert scores // (boxes // 4) == int(native["num_classes"])


@pytest.mark.parametrize("name, kind, side", [
    ("efficientnet_lite3", models.OpenVinoQuantizedClassifier, 280),
    ("efficientnet_lite0", models.OpenVinoClassifier, 224)])
def test_the_classifier_setting_switches_models(name, kind, side):
    """Each classifier loads as itself and names a real cat; the result names the classifier that ran."""
    from app_tier.pipeline import Pipeline
    from tests.pipeline_fixtures import item, jpeg
    pipeline = Pipeline(PipelineSettings.from_settings(Settings(classifier=name)))
    assert type(pipeline.classifier) is kind and pipeline.classifier.SIDE == side
    assert pipeline.classifier.prepare(np.asarray(photo("chelsea"))).shape == (side, side, 3)
    outcome, = pipeline.process([item(jpeg("chelsea"))])
    assert outcome.top_label == "Cat" and f"+{name}+" in outcome.label_model_version


def _lite3_first_layer_input(rescale: bool, pixels: np.ndarray) -> np.ndarray:
    """What Lite3's network receives (its first FakeQuantize's output) for an image of these pixel values."""
    import openvino as ov
    model = runtime.convert_lite3(rescale)
    first = next(op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
    probe = ov.Model([first.output(0)], model.get_parameters(), "probe")
    compiled = ov.Core().compile_model(probe, "CPU", runtime.compile_config(1, "f32"))
    image = np.resize(pixels, (1, 280, 280, 3)).astype(np.uint8)
    received = compiled(image)[0]                                       # channels first
    return received.transpose(0, 2, 3, 1).reshape(-1)[:pixels.size]


def test_lite3_gets_pixels_scaled_as_it_was_trained():
    """The int8 file reads its uint8 input as scale * (q - zero point) over [-1.65, 1.58]; the IR's input step
    makes pixel p reach the network as (p - 127) / 128, to one quantisation step (0.013)."""
    pixels = np.arange(256)
    wanted = (pixels - 127) / 128
    assert np.abs(_lite3_first_layer_input(True, pixels) - wanted).max() < 0.013
    as_declared = _lite3_first_layer_input(False, pixels)
    assert as_declared[255] > 1.5 and as_declared[0] < -1.6                 # the file as it is: 1.6x the contrast


def test_a_classifier_name_is_checked():
    with pytest.raises(ConfigError, match="SIGHTFLEET_CLASSIFIER"):
        Settings.from_env({"SIGHTFLEET_CLASSIFIER": "resnet"})
    with pytest.raises(ValueError, match="classifier must be one of"):
        PipelineSettings(classifier="resnet")
    assert Settings.from_env({"SIGHTFLEET_CLASSIFIER": "efficientnet_lite0"}).classifier == "efficientnet_lite0"


def test_native_runs_lite0_whatever_classifier_is_asked(caplog):
    with caplog.at_level(logging.INFO, logger="app_tier.pipeline.runtime"):
        _, classifier, used = runtime.load_models(PipelineSettings(inference="native", classifier="efficientnet_lite3"))
    assert used == "native" and classifier.MODEL == "efficientnet_lite0"
    assert "efficientnet_lite3 runs on OpenVINO only" in caplog.text
