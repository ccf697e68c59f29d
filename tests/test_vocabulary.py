"""The curated vocabulary: complete for both models, consistent, rebuilt exactly by its generator; the label
merge (pure) on hand-made model output; the public vocabulary route."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from app_tier.pipeline.labels import merge_labels
from app_tier.pipeline.models import Detection
from app_tier.pipeline.names import COCO_NAMES
from sightfleet.vocabulary import VOCABULARY_FILE, Vocabulary, VocabularyError, load_vocabulary
from tests.browser import chromium, requires_chromium, screenshot
from tests.support import REPO

VOCABULARY = load_vocabulary()


def test_every_model_class_maps_to_a_defined_label():
    assert len(VOCABULARY.imagenet) == 1000
    assert set(VOCABULARY.coco) == set(COCO_NAMES)
    for name in (*VOCABULARY.imagenet, *VOCABULARY.coco.values()):
        assert name in VOCABULARY.labels


def test_labels_are_consistent():
    for name, info in VOCABULARY.labels.items():
        assert info.name == name and name == name.strip() and name
        assert all(parent in VOCABULARY.labels for parent in info.parents), name
        assert name not in VOCABULARY.ancestors(name)                    # no cycle
        assert 0 <= info.threshold <= 100
        assert info.categories and set(info.categories) <= set(VOCABULARY.categories)
        for alias in info.aliases:
            assert VOCABULARY.resolve(alias) == name, alias


def test_the_committed_file_is_what_the_generator_makes():
    sys.path.insert(0, str(REPO / "scripts" / "vocabulary"))
    import build_vocabulary
    wordnet = json.loads((REPO / "sightfleet" / "data" / "wordnet_imagenet.json").read_text())
    assert build_vocabulary.render(build_vocabulary.build(wordnet)) == VOCABULARY_FILE.read_text()


@pytest.mark.parametrize("term, expected", [
    ("Cat", "Cat"), ("cat", "Cat"), ("  KITTEN ", "Cat"), ("house   cat", "Cat"), ("pet", "Pet"),
    ("espresso", "Coffee"), ("Hippo", "Hippopotamus"), ("automobile", "Car"), ("tv", None), ("", None),
    ("no such thing", None)])
def test_resolve_takes_names_and_aliases_case_insensitively(term, expected):
    assert VOCABULARY.resolve(term) == expected


def test_hierarchy_walks_both_ways():
    assert VOCABULARY.ancestors("Cat")[:1] == ("Feline",) and VOCABULARY.ancestors("Cat")[-1] == "Animal"
    assert {"Cat", "Dog", "Bird", "Koala"} <= VOCABULARY.descendants("Animal")
    assert "Car" not in VOCABULARY.descendants("Animal") and "Sports Car" in VOCABULARY.descendants("Vehicle")
    assert "Animals and Pets" in VOCABULARY.categories and "Vehicles and Automotive" in VOCABULARY.categories
    assert VOCABULARY.imagenet[281] == "Cat" and VOCABULARY.coco[18] == "Dog"   # tabby; the detector's dog


def _document(**labels) -> dict:
    return {"version": "t", "labels": labels, "models": {"imagenet": ["A"] * 1000, "coco": {"1": "A"}}}


@pytest.mark.parametrize("labels, message", [
    ({"A": {"parents": ["B"]}}, "parent 'B' is not a label"),
    ({"A": {"parents": ["B"]}, "B": {"parents": ["A"]}}, "its own ancestor"),
    ({"A": {"threshold": 101}}, "outside 0-100"),
    ({"A": {"aliases": ["x"]}, "B": {"aliases": ["X"]}}, "already names"),
    ({"B": {}}, "unknown labels"),
])
def test_an_inconsistent_vocabulary_is_refused(labels, message):
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.from_document(_document(**labels))


def _probabilities(**by_index: float) -> np.ndarray:
    row = np.zeros(1000, np.float32)
    for index, p in by_index.items():
        row[int(index[1:])] = p
    return row


def _merge(detections, probabilities, min_confidence=0.0, max_labels=20):
    return merge_labels(detections, probabilities, VOCABULARY, min_confidence, max_labels, 5)


def test_classes_sum_into_their_label_and_bring_every_ancestor():
    # tabby 0.3 + tiger cat 0.25 + Egyptian cat 0.2: no one class is sure, together they are a cat
    labels = _merge([], _probabilities(i281=0.3, i282=0.25, i285=0.2))
    names = [label["Name"] for label in labels]
    assert names[0] == "Cat" and labels[0]["Confidence"] == pytest.approx(75.0, abs=0.01)
    assert set(names) == {"Cat", *VOCABULARY.ancestors("Cat")}
    assert all(label["Confidence"] == pytest.approx(75.0, abs=0.01) for label in labels)
    assert [p["Name"] for p in labels[0]["Parents"]] == list(VOCABULARY.ancestors("Cat"))


def test_the_detector_lends_boxes_and_its_confidence_to_the_ancestors():
    dog = Detection(18, 0.9, (0.1, 0.1, 0.5, 0.6))
    labels = {label["Name"]: label for label in _merge([dog], _probabilities(i281=0.7))}
    assert labels["Dog"]["Instances"][0]["BoundingBox"] == {"Width": 0.4, "Height": 0.5, "Left": 0.1, "Top": 0.1}
    assert labels["Dog"]["Source"] == "detector" and labels["Pet"]["Confidence"] == 90.0
    assert labels["Animal"]["Confidence"] == 90.0 and labels["Animal"]["Instances"] == []
    assert labels["Cat"]["Confidence"] == 70.0                      # above the cat's own threshold


def test_thresholds_and_the_request_floor_cut_labels():
    weak = _merge([Detection(3, 0.3, (0, 0, 1, 1))], _probabilities(i281=0.2))    # a 30 % car, a 20 % cat
    assert weak == []
    assert _merge([], _probabilities(i281=0.5), min_confidence=60) == []


def test_max_labels_keeps_the_specific_label_before_its_ancestors():
    labels = _merge([], _probabilities(i281=0.9), max_labels=2)
    assert [label["Name"] for label in labels] == ["Cat", "Feline"]


def test_suppressed_labels_are_never_returned():
    suppressed = next(name for name, info in VOCABULARY.labels.items() if info.suppressed)
    index = VOCABULARY.imagenet.index(suppressed)
    assert _merge([], _probabilities(**{f"i{index}": 0.99})) == []


def test_the_vocabulary_is_public_json_with_every_label(anonymous_client):
    reply = anonymous_client.get("/api/vocabulary")
    assert reply.status_code == 200 and reply.headers["Cache-Control"] == "public, max-age=3600"
    document = reply.get_json()
    assert document["version"] == VOCABULARY.version and len(document["labels"]) == len(VOCABULARY.labels)
    cat = next(label for label in document["labels"] if label["Name"] == "Cat")
    assert cat["Ancestors"] == list(VOCABULARY.ancestors("Cat")) and "Kitten" in cat["Aliases"]
    again = anonymous_client.get("/api/vocabulary", headers={"If-None-Match": reply.headers["ETag"]})
    assert again.status_code == 304 and not again.data


def test_the_vocabulary_page_lists_every_label(anonymous_client):
    reply = anonymous_client.get("/vocabulary")
    assert reply.status_code == 200 and reply.mimetype == "text/html"
    page = reply.get_data(as_text=True)
    assert page.count('<tr id="label-') == len(VOCABULARY.labels)
    assert "Feline › Pet › Mammal › Animal" in page or "Feline › Mammal" in page
    assert VOCABULARY.version in page


@pytest.fixture
def served(app):
    """The app on a real port in a thread, for the browser."""
    import threading
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@requires_chromium
def test_the_vocabulary_page_in_chromium(served):
    from selenium.webdriver.common.by import By
    with chromium() as driver:
        driver.get(f"{served}/vocabulary")
        rows = driver.find_elements(By.CSS_SELECTOR, "#vocabulary tbody tr")
        assert len(rows) == len(VOCABULARY.labels)
        cat = next(row for row in rows if row.find_element(By.TAG_NAME, "td").text == "Cat")
        cells = [cell.text for cell in cat.find_elements(By.TAG_NAME, "td")]
        assert cells[1].startswith("Feline") and "Kitten" in cells[2] and "Animals and Pets" in cells[3]
        assert str(len(VOCABULARY.labels)) in driver.find_element(By.ID, "vocabulary-summary").text
        screenshot(driver, "vocabulary")
