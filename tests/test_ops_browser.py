"""The ops dashboard in headless Chromium: seeded text stays text, and the charts breathe with a real burst."""
from __future__ import annotations

import threading
import time

import pytest

from tests.browser import chromium, requires_chromium, screenshot
from tests.support import free_port, jpeg_bytes, open_sign_in_link, sign_in_url, start_stack, wait_for
from web_tier.accounts import Accounts
from web_tier.opsdata import iso

pytestmark = pytest.mark.e2e

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "immunohistochemistry")
BURST = 60
PAGE_WINDOW = "2m"  # the page: a 60-image burst on this machine lasts about half a minute
CHECK_WINDOW = "5m"  # the JSON checks: wide enough to hold the whole burst on a slow day


@pytest.fixture
def served_app(app):
    """The app on a free port, served by werkzeug in a thread."""
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _charts_drawn(driver) -> bool:
    return driver.execute_script(
        "return ['queue','instances','throughput','latency','failures'].every("
        "n => document.querySelector('#chart-' + n + ' .main-svg') !== null)")


@requires_chromium
def test_worker_and_decision_text_is_shown_as_text(served_app, resources):
    accounts = Accounts(resources.accounts)
    accounts.create("ops-admin", admin=True)
    now = time.time()
    resources.fleet_log.put("worker", "i-hostile", {
        "instance_id": "i-hostile", "state": HOSTILE, "launched_at": iso(now - 30), "last_heartbeat": iso(now - 1),
        "images_done": 3, "images_failed": 0, "model_load_s": 1.5, "current": [HOSTILE]})
    resources.fleet_log.put("decision", iso(now - 1), {
        "time": now - 1, "at": iso(now - 1), "visible": 0, "in_flight": 0, "backlog": 0, "running": 0,
        "pending": 0, "target": 10, "desired": 0, "launched": [], "terminated": [{"id": "i-1", "reason": HOSTILE}],
        "errors": [], "changed": True})
    with chromium() as driver:
        open_sign_in_link(driver, sign_in_url(served_app, accounts, "ops-admin", "/ops"))
        wait_for(lambda: _charts_drawn(driver) and "i-hostile" in driver.find_element("id", "workers").text, 30,
                 what="the dashboard to draw")
        rows = driver.find_elements("css selector", "#workers tbody tr")
        assert HOSTILE in rows[0].text and f"1 message(s): {HOSTILE}" in rows[0].text
        assert HOSTILE in driver.find_element("id", "decisions").text
        assert driver.find_elements("css selector", "#ops img") == []
        assert driver.title != "pwned"
        assert driver.find_element("id", "k-processed").text == "3"
        assert driver.find_element("id", "problem").text == ""


@requires_chromium
def test_the_pool_and_each_workers_resumes_are_shown(served_app, resources):
    accounts = Accounts(resources.accounts)
    accounts.create("ops-admin", admin=True)
    now = time.time()
    resumed, pooled = resources.fleet.launch(2, "#!/bin/bash\n")
    resources.fleet.stop([pooled])
    for instance_id, state, resumes, last_resume_s in ((resumed, "idle", 3, 0.42), (pooled, "pooled", 1, 0.25)):
        resources.fleet_log.put("worker", instance_id, {
            "instance_id": instance_id, "state": state, "launched_at": iso(now - 60), "last_heartbeat": iso(now - 1),
            "images_done": 12, "images_failed": 0, "model_load_s": 1.25, "current": [], "resumes": resumes,
            "pooled_s": 20.0, "last_resume_s": last_resume_s})
    with chromium() as driver:
        driver.set_window_size(1400, 1000)
        open_sign_in_link(driver, sign_in_url(served_app, accounts, "ops-admin", "/ops"))
        wait_for(lambda: _charts_drawn(driver) and resumed in driver.find_element("id", "workers").text, 30,
                 what="the dashboard to draw")
        driver.execute_script("document.getElementById('workers').scrollIntoView()")
        headers = [th.get_attribute("textContent") for th in driver.find_elements("css selector", "#workers thead th")]
        rows = {cells[0]: cells for cells in (
            [td.get_attribute("textContent") for td in tr.find_elements("css selector", "td")]
            for tr in driver.find_elements("css selector", "#workers tbody tr"))}
        pooled_tile = driver.find_element("id", "k-pooled").get_attribute("textContent")
        screenshot(driver, "ops-pool-and-resumes")
    cold, resumes, last = (headers.index(name) for name in ("Cold start", "Resumes", "Last resume"))
    assert resumes == cold + 1 and last == cold + 2
    assert rows[resumed][cold] == "1.25 s" and rows[resumed][resumes] == "3" and rows[resumed][last] == "0.42 s"
    assert rows[pooled][resumes] == "1" and rows[pooled][last] == "0.25 s" and "pooled" in rows[pooled][1]
    assert pooled_tile == "1"


def _send_burst(stack, album: str) -> list[str]:
    """BURST small real photos through POST /api/images, ten per request."""
    photos = [jpeg_bytes(PHOTOS[i % len(PHOTOS)], scale=0.25, quality=70 + i % 25) for i in range(BURST)]
    ids = []
    for start in range(0, BURST, 10):
        files = [("file", (f"burst-{i}.jpg", photos[i], "image/jpeg")) for i in range(start, start + 10)]
        reply = stack.post("/api/images", params={"album": album}, files=files, timeout=60)
        assert reply.status_code == 202, reply.text
        ids += [image["id"] for image in reply.json()["images"]]
    return ids


class Watcher:
    """Polls the ops JSON during the test and remembers the peak fleet size it saw."""

    def __init__(self, stack):
        self.stack = stack
        self.peak_running = 0

    def summary(self) -> dict:
        doc = self.stack.get("/api/ops/summary", timeout=30).json()
        self.peak_running = max(self.peak_running, doc["instances"]["running"])
        return doc

    def timeseries(self, window: str = CHECK_WINDOW) -> dict:
        return self.stack.get("/api/ops/timeseries", params={"window": window}, timeout=30).json()


def _all_succeeded(stack, album: str) -> bool:
    stack.track()
    images = stack.get("/api/images", params={"album": album, "limit": 100}, timeout=30).json()
    return sum(1 for image in images["images"] if image["status"] == "SUCCEEDED") == BURST


@requires_chromium
def test_dashboard_rises_and_falls_with_a_burst(tmp_path):
    # Without a warm pool: this watches the fleet launch and retire (the pool has its own end-to-end test).
    stack = start_stack(tmp_path, SIGHTFLEET_MAX_INSTANCES="3", SIGHTFLEET_IDLE_GRACE_S="8",
                        SIGHTFLEET_WARM_POOL_SIZE="0")
    watcher = Watcher(stack)
    try:
        with chromium() as driver:
            driver.set_window_size(1400, 1800)
            open_sign_in_link(driver, stack.sign_in_link(next_path=f"/ops?window={PAGE_WINDOW}"))
            _send_burst(stack, "ops-burst")
            wait_for(lambda: watcher.summary()["totals"]["images_processed"] >= 10, 120, interval_s=1,
                     what="the fleet to get going")
            wait_for(lambda: max(v or 0 for v in watcher.timeseries(PAGE_WINDOW)["series"]["queue_visible"]) > 0, 30,
                     interval_s=1, what="queue depth to reach the chart")
            time.sleep(4)  # one more poll of the page
            assert _charts_drawn(driver) and driver.find_element("id", "problem").text == ""
            screenshot(driver, "ops-burst")
            wait_for(lambda: _all_succeeded(stack, "ops-burst"), 120, interval_s=1, what="every image SUCCEEDED")
            wait_for(lambda: watcher.summary()["instances"]["running"] + watcher.summary()["instances"]["pending"] == 0,
                     60, interval_s=1, what="scale-in to zero")
            timeseries = wait_for(lambda: _settled(watcher.timeseries()), 30, interval_s=1,
                                  what="the charts to show the fleet back at zero")
            time.sleep(10)  # a few steps at zero after the fall
            screenshot(driver, "ops-after-scale-in")
            final = watcher.summary()
    except BaseException:
        print(stack.log_text()[-6000:])
        raise
    finally:
        stack.stop()
    series = timeseries["series"]
    assert watcher.peak_running > 0 and max(v or 0 for v in series["instances_running"]) > 0
    assert final["instances"]["running"] == 0 and final["instances"]["pending"] == 0
    assert final["totals"]["images_succeeded"] == BURST and final["totals"]["images_failed"] == 0
    assert timeseries["window_totals"]["completed"] == BURST
    assert final["totals"]["instance_seconds"] > 0 and final["totals"]["instance_seconds_per_image"] > 0
    assert all(not w["live"] and w["state"] in ("terminated", "stopped") for w in final["workers"]), final["workers"]
    assert any(d["action"].startswith("launch") for d in final["decisions"]), final["decisions"]


def _settled(timeseries: dict) -> dict | None:
    """The timeseries once every image is in a closed step and the running gauge has fallen to zero."""
    running = [v for v in timeseries["series"]["instances_running"] if v is not None]
    if timeseries["window_totals"]["completed"] == BURST and running and running[-1] == 0:
        return timeseries
    return None
