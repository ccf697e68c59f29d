"""End to end: the stack started like scripts/run recognises a real cat, then stops without leftovers."""
from __future__ import annotations

import pytest
import requests

from devstack.moto_patches import PATCHES
from tests.support import REPO, alive, jpeg_bytes, start_stack, wait_for

pytestmark = pytest.mark.e2e


# Once as plain moto too: the local endpoint's replacements of moto's internals change no answer on the way.
@pytest.mark.parametrize("patches", ["on", "off"], ids=["patched", "plain-moto"])
def test_upload_to_result_and_clean_shutdown(tmp_path, patches):
    stack = start_stack(tmp_path, SIGHTFLEET_MAX_INSTANCES="1", SIGHTFLEET_IDLE_GRACE_S="30",
                        SIGHTFLEET_EMULATOR_PATCHES=patches)
    try:
        assert stack.get("/healthz", timeout=5).status_code == 200
        reply = stack.post("/api/images", files={"file": ("chelsea.jpg", jpeg_bytes(), "image/jpeg")},
                           timeout=30)
        assert reply.status_code == 202, reply.text
        status_url = stack.web_url + reply.json()["images"][0]["status_url"]

        def final():
            stack.track()
            result = requests.get(status_url, headers=stack.headers, timeout=5).json()
            return result if result["status"] in ("SUCCEEDED", "FAILED") else None

        result = wait_for(final, 60, interval_s=0.5, what="the cat's result")
        assert result["status"] == "SUCCEEDED", result
        assert any("cat" in label["Name"].lower() for label in result["labels"]), result["labels"]
        assert result["thumbnail_url"] and requests.get(result["thumbnail_url"], timeout=5).content[:3] == b"\xff\xd8\xff"
        assert result["instance_id"].startswith("i-")
    except BaseException:
        print(stack.log_text()[-6000:])
        raise
    finally:
        code = stack.stop()
    assert code == 0, stack.log_text()[-4000:]
    assert (f"{len(PATCHES)} patches in place" in stack.log_text()) == (patches == "on"), stack.log_text()[-4000:]
    assert len(stack.seen_pids) >= 5, "expected moto, gunicorn, controller, local host and a worker"
    left = [pid for pid in stack.seen_pids if alive(pid)]
    assert not left, f"processes left behind: {left}"


def test_second_run_says_it_is_already_running(local_stack, tmp_path):
    import subprocess
    env = dict(local_stack.env)
    proc = subprocess.run([".venv/bin/python", "-m", "devstack.stack"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "already running" in proc.stderr
    assert local_stack.get("/healthz", timeout=5).status_code == 200
