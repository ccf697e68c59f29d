"""Headless Chromium (Debian's chromium + chromedriver) driven by Selenium, for page tests."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--window-size=1280,900")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"

_without_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="Debian chromium and chromium-driver are not installed (scripts/test installs them as root)",
)


def requires_chromium(test):
    """A page test: marked `browser` (and so slow), skipped where Debian's chromium is missing."""
    return pytest.mark.browser(_without_chromium(test))


@contextlib.contextmanager
def chromium(*extra_flags: str):
    """A fresh headless Chromium with its own profile directory (and extra_flags); quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS + extra_flags:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            driver.quit()


def screenshot(driver, name: str) -> Path:
    """Save a full-window screenshot under artifacts/screenshots/ for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
