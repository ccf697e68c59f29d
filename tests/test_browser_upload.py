"""Headless Chromium: upload three photos through the real page and watch the gallery finish them live."""
from __future__ import annotations

import uuid

from tests.browser import chromium, requires_chromium, screenshot
from tests.support import TESTDATA, jpeg_bytes, open_sign_in_link

FINAL_WAIT_S = 150


def photos(folder) -> list[str]:
    paths = []
    for name, data in (("chelsea.jpg", jpeg_bytes("chelsea")), ("coffee.jpg", jpeg_bytes("coffee")),
                       ("DSCN0010.jpg", (TESTDATA / "exif-samples/jpg/gps/DSCN0010.jpg").read_bytes())):
        path = folder / name
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def badges(driver) -> list[str]:
    # Read in one script: the live gallery swaps cards, so element handles can go stale between calls.
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid .badge')].map(b => b.textContent.trim().toUpperCase());")


def wait_until(driver, condition, timeout_s: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout_s, poll_frequency=0.3).until(lambda d: condition(d), message=what)


def severe_console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@requires_chromium
def test_upload_three_photos_and_watch_them_succeed_without_reload(local_stack, tmp_path):
    album = f"Browser {uuid.uuid4().hex[:6]}"
    paths = photos(tmp_path)
    with chromium() as watcher, chromium() as driver:
        # A second browser watches the (still empty) album: cards must appear and finish on their own.
        # Both sign in as the stack's admin with a one-time link each, and land on their page.
        open_sign_in_link(watcher, local_stack.sign_in_link(next_path=f"/gallery?album={album.replace(' ', '%20')}"))
        watcher.execute_script("window.__notReloaded = true;")
        assert badges(watcher) == []

        open_sign_in_link(driver, local_stack.sign_in_link(next_path="/"))
        driver.find_element("id", "new-album").send_keys(album)
        driver.find_element("id", "files").send_keys("\n".join(paths))
        wait_until(driver, lambda d: len(d.find_elements("css selector", "#uploads .upload-row.done")) == 3, 60,
                   "three uploads accepted")
        rows = driver.find_elements("css selector", "#uploads .upload-row")
        assert [r.find_element("css selector", ".name").text for r in rows] == ["chelsea.jpg", "coffee.jpg", "DSCN0010.jpg"]
        assert all(r.find_element("css selector", "progress").get_attribute("value") == "100" for r in rows)

        # Refusals show next to their file: too large (checked in the browser), unsupported (by the server).
        big, tiff = tmp_path / "huge.jpg", tmp_path / "Arbitro.tiff"
        big.write_bytes(b"\xff\xd8\xff" + bytes(11 * 2**20))
        tiff.write_bytes((TESTDATA / "exif-samples/tiff/Arbitro.tiff").read_bytes())
        driver.find_element("id", "files").send_keys(f"{big}\n{tiff}")
        wait_until(driver, lambda d: len(d.find_elements("css selector", "#uploads .upload-row.failed")) == 2, 30,
                   "two refusals")
        refused = driver.execute_script(
            "return [...document.querySelectorAll('#uploads .upload-row.failed')]"
            ".map(r => [r.querySelector('.name').textContent, r.querySelector('.state').textContent]);")
        assert refused[0][0] == "huge.jpg" and "too large" in refused[0][1] and "limit is 10 MB" in refused[0][1]
        assert refused[1][0] == "Arbitro.tiff" and "TIFF images are not supported" in refused[1][1]
        driver.execute_script("document.getElementById('uploads-panel').scrollIntoView();")
        screenshot(driver, "upload")

        driver.find_element("id", "gallery-link").click()
        wait_until(driver, lambda d: len(badges(d)) == 3, 20, "the gallery to list three photos")
        driver.execute_script("window.__notReloaded = true;")
        wait_until(driver, lambda d: badges(d) == ["SUCCEEDED"] * 3, FINAL_WAIT_S, "all three SUCCEEDED")
        wait_until(watcher, lambda d: badges(d) == ["SUCCEEDED"] * 3, 60, "the watcher to see all three SUCCEEDED")
        for browser in (driver, watcher):
            assert browser.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
        wait_until(driver, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#grid img')].filter(i => i.complete && i.naturalWidth).length") == 3,
            20, "three thumbnails loaded")
        screenshot(driver, "gallery")

        cat = driver.find_element("xpath", "//li[@class='photo'][.//span[@class='filename' and text()='chelsea.jpg']]//a")
        cat.click()
        wait_until(driver, lambda d: d.execute_script(
            "const i = document.getElementById('annotated'); return i && i.complete && i.naturalWidth > 0;"),
            20, "the annotated image")
        labels = [td.text.lower() for td in driver.find_elements("css selector", "#labels tbody td:first-child")]
        assert any("cat" in label for label in labels), labels
        assert driver.find_element("css selector", ".status-line .badge").text.upper() == "SUCCEEDED"
        screenshot(driver, "image")

        driver.get(local_stack.web_url + "/gallery?album=" + album.replace(" ", "%20"))
        driver.find_element("xpath", "//span[@class='filename' and text()='DSCN0010.jpg']").click()
        wait_until(driver, lambda d: d.find_elements("css selector", "#metadata"), 20, "the metadata table")
        rows = {r.find_element("tag name", "th").text: r.find_element("tag name", "td").text
                for r in driver.find_elements("css selector", "#metadata tr")}
        assert "GPS" in rows and "°" in rows["GPS"] and "Camera" in rows, rows
        screenshot(driver, "image-metadata")
        # No script errors or policy violations; the one 415 answer above is expected.
        assert [m for m in severe_console_errors(driver) if "status of 415" not in m] == []
        assert severe_console_errors(watcher) == []
