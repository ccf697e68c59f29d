"""Headless Chromium: sign in with a password, upload, see the gallery, sign out; the gallery then asks again."""
from __future__ import annotations

import uuid
from pathlib import Path

from tests.browser import chromium, requires_chromium
from tests.support import jpeg_bytes
from tests.test_browser_upload import badges, wait_until

PASSWORD = "browser test password"


def snap(driver, folder: Path, name: str) -> Path:
    """A screenshot in the test's own folder (for people to look at; the test reads its size)."""
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


@requires_chromium
def test_sign_in_upload_gallery_sign_out(local_stack, tmp_path):
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    local_stack.accounts().create(name, password=PASSWORD)
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(jpeg_bytes("chelsea"))
    album = f"Signin {uuid.uuid4().hex[:6]}"
    with chromium() as driver:
        driver.get(f"{local_stack.web_url}/gallery?album={album.replace(' ', '%20')}")
        wait_until(driver, lambda d: "/signin" in d.current_url, 10, "the gallery to ask for sign-in")
        driver.find_element("name", "name").send_keys(name)
        driver.find_element("name", "password").send_keys("not the password")
        driver.find_element("css selector", ".signin-form button").click()
        wait_until(driver, lambda d: d.find_elements("css selector", ".signin-error"), 10, "the refusal")
        assert driver.find_element("css selector", ".signin-error").text == "wrong user name or password"
        snap(driver, tmp_path, "1-wrong-password")

        driver.find_element("name", "password").send_keys(PASSWORD)
        driver.find_element("css selector", ".signin-form button").click()
        wait_until(driver, lambda d: "/gallery" in d.current_url, 10, "the way back to the gallery")
        assert driver.find_element("css selector", ".user-name").text == name
        assert driver.find_elements("link text", "Ops") == []  # not an admin
        snap(driver, tmp_path, "2-signed-in-gallery")

        driver.get(local_stack.web_url + "/")
        driver.find_element("id", "new-album").send_keys(album)
        driver.find_element("id", "files").send_keys(str(photo))
        wait_until(driver, lambda d: d.find_elements("css selector", "#uploads .upload-row.done"), 60, "the upload")
        snap(driver, tmp_path, "3-uploaded")
        driver.find_element("id", "gallery-link").click()
        wait_until(driver, lambda d: badges(d) == ["SUCCEEDED"], 150, "the photo to be recognised")
        wait_until(driver, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#grid img')].filter(i => i.complete && i.naturalWidth).length") == 1,
            20, "the thumbnail")
        snap(driver, tmp_path, "4-gallery")
        gallery_url = driver.current_url

        driver.find_element("id", "sign-out").click()
        wait_until(driver, lambda d: "/signin" in d.current_url, 10, "the sign-in page after signing out")
        driver.get(gallery_url)
        wait_until(driver, lambda d: "/signin" in d.current_url and d.find_elements("name", "password"), 10,
                   "the gallery to ask for sign-in again")
        assert driver.find_elements("css selector", "#grid") == []
        snap(driver, tmp_path, "5-signed-out")
