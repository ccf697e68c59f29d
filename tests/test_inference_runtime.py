"""The inference runtime setting, the IR cache (one conversion with several workers at once) and the native fallback."""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app_tier.pipeline import PipelineSettings
from app_tier.pipeline import runtime
from app_tier.pipeline.models import NativeClassifier, NativeDetector
from sightfleet.config import ConfigError, Settings

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


def test_cache_key_names_every_version():
    key = runtime.cache_key()
    for package in ("openvino", *runtime.MODEL_PACKAGES):
        assert package in key
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
