"""Headless Chromium on the whole local stack: upload a cat photo through the page, click its label chip in the
gallery and land on the search that finds it; search by an ancestor from the search box; the labels page counts.
"""
from __future__ import annotations

import uuid

from tests.browser import chromium, requires_chromium, screenshot
from tests.support import jpeg_bytes, open_sign_in_link
from tests.test_browser_upload import severe_console_errors, wait_until

FINAL_WAIT_S = 150


def card_ids(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#grid li.photo')].map(li => li.dataset.id);")


@requires_chromium
def test_upload_click_a_label_chip_and_see_the_search_and_the_counts(local_stack, tmp_path):
    album = f"Labels {uuid.uuid4().hex[:6]}"
    cat, cup = tmp_path / "chelsea.jpg", tmp_path / "coffee.jpg"
    cat.write_bytes(jpeg_bytes("chelsea"))
    cup.write_bytes(jpeg_bytes("coffee"))
    with chromium() as driver:
        open_sign_in_link(driver, local_stack.sign_in_link(next_path="/"))
        driver.find_element("id", "new-album").send_keys(album)
        driver.find_element("id", "files").send_keys(f"{cat}\n{cup}")
        wait_until(driver, lambda d: len(d.find_elements("css selector", "#uploads .upload-row.done")) == 2, 60,
                   "two uploads accepted")
        driver.find_element("id", "gallery-link").click()
        wait_until(driver, lambda d: len(d.find_elements("css selector", "#grid .badge.succeeded")) == 2
                   and len(d.find_elements("css selector", "#grid a.tag")) >= 2, FINAL_WAIT_S, "both labelled")
        ids = dict(driver.execute_script(
            "return [...document.querySelectorAll('#grid li.photo')]"
            ".map(li => [li.querySelector('.filename').textContent, li.dataset.id]);"))
        screenshot(driver, "labels-gallery")

        chip = next(a for a in driver.find_elements("css selector", f"li[data-id='{ids['chelsea.jpg']}'] a.tag")
                    if a.text.startswith("Cat"))
        chip.click()
        wait_until(driver, lambda d: "label=Cat" in d.current_url and d.find_element("tag name", "h1").text
                   == "Photos with Cat", 20, "the search page")
        assert ids["chelsea.jpg"] in card_ids(driver) and ids["coffee.jpg"] not in card_ids(driver)
        screenshot(driver, "labels-search-cat")

        box = driver.find_element("id", "label-search")
        options = driver.execute_script("return [...document.querySelectorAll('#label-suggestions option')]"
                                        ".map(o => o.value);")
        assert {"Cat", "Animal"} <= set(options)
        box.clear()
        box.send_keys("animal\n")
        wait_until(driver, lambda d: "label=animal" in d.current_url, 20, "the Animal search")
        assert ids["chelsea.jpg"] in card_ids(driver) and ids["coffee.jpg"] not in card_ids(driver)

        driver.get(local_stack.web_url + "/labels?album=" + album.replace(" ", "%20"))
        rows = dict(driver.execute_script(
            "return [...document.querySelectorAll('#label-counts tbody tr')]"
            ".map(r => [r.querySelector('a').textContent, Number(r.querySelector('.num').textContent)]);"))
        assert rows["Cat"] == 1 and rows["Animal"] == 1 and rows.get("Cup") == 1, rows
        screenshot(driver, "labels-page")

        driver.get(local_stack.web_url + f"/images/{ids['chelsea.jpg']}")
        chips = {a.text: a.get_attribute("href") for a in driver.find_elements("css selector", "#labels a.tag")}
        assert chips["Cat"].endswith("/gallery?label=Cat") and chips["Animal"].endswith("/gallery?label=Animal")
        screenshot(driver, "labels-image-page")
        assert severe_console_errors(driver) == []
