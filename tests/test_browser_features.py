"""Headless Chromium on the whole local stack: choose "text" on the upload form and the job asks for it; the
image page shows the words, faces, colours, quality and moderation a worker found; the gallery's search box
finds the photo by `text:carson`."""
from __future__ import annotations

import os
import uuid

from sightfleet import labelindex
from sightfleet.config import Settings
from sightfleet.resources import Resources
from testkit.access import AWS_TEST_ENV
from tests.browser import chromium, requires_chromium, screenshot
from tests.support import jpeg_bytes, open_sign_in_link
from tests.test_browser_upload import severe_console_errors, wait_until
from tests.test_findterms import color, word

FINAL_WAIT_S = 150


def answers() -> dict:
    """What the text, faces, properties and moderation stages answer for a sign (in Rekognition's shapes)."""
    return {"text_detections": [word("KIT CARSON 1850", kind="LINE"), word("KIT"), word("CARSON"), word("1850")],
            "face_details": [{"BoundingBox": {"Width": .2, "Height": .2, "Left": .1, "Top": .1},
                              "Confidence": 99.0, "Landmarks": []}] * 2,
            "image_properties": {"Quality": {"Brightness": 61.5, "Sharpness": 80.0, "Contrast": 40.2},
                                 "DominantColors": [color("red", 45.0), color("white", 30.0, "#f0f0f0")]},
            "moderation_labels": [{"Name": "Tobacco", "ParentName": "", "Confidence": 71.0, "TaxonomyLevel": 1}],
            "review": {"flagged": True, "held": False}}


@requires_chromium
def test_choose_text_on_the_form_see_the_answers_and_search_by_a_word(local_stack, tmp_path):
    for key, value in AWS_TEST_ENV.items():
        os.environ.setdefault(key, value)
    resources = Resources.connect(Settings(endpoint_url=local_stack.aws_url, prefix=local_stack.prefix))
    photo = tmp_path / "sign.jpg"
    photo.write_bytes(jpeg_bytes("coffee", scale=0.4))
    with chromium() as driver:
        open_sign_in_link(driver, local_stack.sign_in_link(next_path="/"))
        boxes = {b.get_attribute("value"): b for b in driver.find_elements("css selector", "#features input")}
        assert set(boxes) == {"labels", "text", "faces", "properties"} and not boxes["text"].is_selected()
        boxes["text"].click()
        screenshot(driver, "features-upload-form")
        driver.find_element("id", "new-album").send_keys(f"Signs {uuid.uuid4().hex[:6]}")
        driver.find_element("id", "files").send_keys(str(photo))
        wait_until(driver, lambda d: d.find_elements("css selector", "#uploads .upload-row.done a.view"), 60, "sent")
        image_id = driver.find_element("css selector", "#uploads a.view").get_attribute("href").rsplit("/", 1)[1]
        assert "text" in resources.results.get(image_id)["features"]
        wait_until(driver, lambda d: resources.results.get(image_id)["status"] == "SUCCEEDED", FINAL_WAIT_S, "done")

        doc = resources.results.get(image_id)   # the stages' answers, written as a worker with them would
        resources.results.replace({**doc, **answers()}, doc["status"], doc["updated_at"])
        labelindex.sync(resources.labels, {**doc, **answers()}, resources.settings.min_confidence)
        driver.get(local_stack.web_url + f"/images/{image_id}")
        assert "KIT CARSON 1850" in driver.find_element("id", "text").text
        assert driver.find_element("id", "face-count").text == "2"
        assert len(driver.find_elements("css selector", "#properties .swatches svg rect")) == 2
        assert "Sharpness" in driver.find_element("id", "quality").text
        assert "Tobacco" in driver.find_element("id", "moderation").text
        driver.execute_script("document.getElementById('faces').scrollIntoView()")
        screenshot(driver, "features-image-page")

        driver.get(local_stack.web_url + "/gallery")
        box = driver.find_element("id", "label-search")
        box.send_keys("text:Carson\n")
        wait_until(driver, lambda d: "text=Carson" in d.current_url, 20, "the text search")
        assert driver.find_element("tag name", "h1").text == "Photos with the word \u201cCarson\u201d"
        assert driver.execute_script("return [...document.querySelectorAll('#grid li.photo')]"
                                     ".map(li => li.dataset.id);") == [image_id]
        assert driver.find_element("id", "label-search").get_attribute("value") == "text:Carson"
        screenshot(driver, "features-text-search")
        assert severe_console_errors(driver) == []
