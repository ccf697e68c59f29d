"""The list of moto patches: each names a place moto has and a test that exists; all go in, or none."""
from __future__ import annotations

import ast
import json
import logging
import re
import subprocess
import sys

import pytest

from devstack import emulator
from devstack.local_state import EndpointState
from devstack.moto_patches import PATCHES, TESTED_MOTO_VERSIONS, apply_patches, installed_moto_version, resolve
from sightfleet.config import ConfigError, Settings
from tests.support import REPO


def test_the_tested_versions_are_the_pinned_one():
    pins = re.findall(r"^moto(?:\[[\w,]+\])?==(\S+)", (REPO / "requirements.txt").read_text(), re.MULTILINE)
    assert pins and set(pins) <= TESTED_MOTO_VERSIONS
    assert installed_moto_version() in TESTED_MOTO_VERSIONS   # this checkout's venv: the patches are exercised


@pytest.mark.parametrize("patch", PATCHES, ids=[patch.target.split(":")[1] for patch in PATCHES])
def test_each_patch_has_a_target_a_replacement_a_reason_and_a_test(patch):
    from devstack import moto_repairs
    resolve(patch.target)   # moto has the place
    assert hasattr(moto_repairs, patch.replacement) and len(patch.why) > 20
    path, _, name = patch.proven_by.partition("::")
    tests = {node.name for node in ast.walk(ast.parse((REPO / path).read_text())) if isinstance(node, ast.FunctionDef)}
    assert name in tests, f"{patch.proven_by} is no test"


def test_every_patch_goes_in_on_the_tested_version():
    """In a process of its own: a replaced moto stays replaced for the rest of a process."""
    script = """
import json, sys
import moto.sqs.responses   # a module that imported camelcase_to_underscores by name
from devstack import moto_repairs
from devstack.moto_patches import PATCHES, apply_patches, resolve
applied = apply_patches(True)
places = [resolve(p.target) for p in PATCHES]
wrong = [p.target for p, (owner, name) in zip(PATCHES, places)
         if owner.__dict__.get(name, getattr(owner, name)) is not getattr(moto_repairs, p.replacement)]
stale = [m for m, module in sys.modules.items() if m.startswith("moto.")
         and getattr(module, "camelcase_to_underscores", None) not in (None, moto_repairs._camelcase_to_underscores)]
print(json.dumps({"applied": applied, "wrong": wrong, "stale": stale}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"applied": True, "wrong": [], "stale": []}


def test_another_moto_version_gets_a_warning_and_plain_moto(caplog):
    from moto.sqs.models import SQSBackend
    before = SQSBackend.get_queue_attributes
    with caplog.at_level(logging.INFO, "devstack.moto_patches"):
        assert apply_patches(True, found="5.3.0") is False
        assert apply_patches(False) is False
    assert SQSBackend.get_queue_attributes is before
    warning, = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "moto 5.3.0 is not a version" in warning.getMessage() and "serving plain moto" in warning.getMessage()
    assert any("patches off" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_the_patches_are_a_setting():
    assert Settings.from_env({}).emulator_patches == "on"
    assert Settings.from_env({"SIGHTFLEET_EMULATOR_PATCHES": "off"}).emulator_patches == "off"
    with pytest.raises(ConfigError, match="SIGHTFLEET_EMULATOR_PATCHES must be on or off"):
        Settings.from_env({"SIGHTFLEET_EMULATOR_PATCHES": "no"})


def test_snapshots_are_refused_on_another_moto_version(tmp_path, monkeypatch, caplog):
    """moto's private state is neither read nor written back: the folder stays as it was, the stack is told why."""
    monkeypatch.setattr(emulator, "moto_is_tested", lambda: False)
    (tmp_path / "state.json").write_text("{}")
    with caplog.at_level(logging.WARNING, "devstack.emulator"):
        state = emulator._endpoint_state(tmp_path)
    assert not state.readable and "snapshots read moto's private state" in caplog.text
    assert state.restore() == {"restored": False, "reason": state.save()["reason"]}
    assert state.save()["saved"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert EndpointState(tmp_path).readable
