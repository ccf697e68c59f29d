"""The operator actions of /ops in headless Chromium: press retry, watch the queue count change; pause shows
the banner on every page; what each worker is doing, its outlier highlighted; hostile text stays text."""
from __future__ import annotations

import time

from tests.browser import chromium, requires_chromium, screenshot
from tests.support import open_sign_in_link, sign_in_url, wait_for
from tests.test_ops_actions import failed_photo
from tests.test_ops_browser import served_app  # noqa: F401 - the app served on a free port
from web_tier.accounts import Accounts
from web_tier.opsdata import iso

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'
FAILED = 4


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _seed_workers(resources) -> None:
    ids = resources.fleet.launch(3, "")
    now = time.time()
    for instance_id, age, photo in zip(ids, (4, 5, 600), ("a", "b", HOSTILE)):
        resources.fleet_log.put("worker", instance_id, {
            "instance_id": instance_id, "state": "busy", "last_heartbeat": iso(now), "stage": "processing",
            "holding": [{"id": photo, "since": iso(now - age), "stage": "processing"}],
            "model_versions": {"openvino": "2026.4.1"}, "cpu_percent": 95.0, "rss_mb": 640.0})


@requires_chromium
def test_pressing_retry_requeues_the_failed_photos_and_the_counts_follow(served_app, app, resources):  # noqa: F811
    accounts = Accounts(resources.accounts)
    accounts.create("ops-admin", admin=True)
    for _ in range(FAILED):
        failed_photo(resources)
    _seed_workers(resources)
    with chromium() as driver:
        open_sign_in_link(driver, sign_in_url(served_app, accounts, "ops-admin", "/ops"))
        wait_for(lambda: _text(driver, "k-visible") == "0" and _text(driver, "doing").count("processing") == 3,
                 30, what="the dashboard with the queue empty and three workers")
        outlier = driver.find_elements("css selector", "#doing tr.outlier")
        assert len(outlier) == 1 and HOSTILE in outlier[0].text   # the photo held 600 s, shown as text
        driver.find_element("id", "retry-button").click()
        wait_for(lambda: _text(driver, "action-result").startswith(f"retry: {FAILED} done"), 30,
                 what="the retry's answer")
        wait_for(lambda: _text(driver, "k-visible") == str(FAILED), 30, what="the queued count to follow")
        wait_for(lambda: "ops-admin" in _text(driver, "audit") and "retry" in _text(driver, "audit"), 30,
                 what="the retry in the audit trail")
        screenshot(driver, "ops-retry")
        driver.execute_script("document.getElementById('doing').scrollIntoView()")
        screenshot(driver, "ops-workers")
        driver.find_element("css selector", "button[data-action=pause]").click()
        wait_for(lambda: "paused by ops-admin" in _text(driver, "processing-state"), 30, what="the pause")
        wait_for(lambda: "processing is paused" in _text(driver, "alerts"), 30, what="the paused alert")
        driver.get(served_app + "/gallery")
        assert "Processing is paused by ops-admin" in _text(driver, "paused-banner")
        assert driver.title != "pwned" and driver.find_elements("css selector", "#ops img") == []
