"""What a photo is found by besides its labels (sightfleet/findterms.py, sightfleet/labelindex.py), pure:
words, faces and colours under keys no label can have, bounded per photo; a held photo only by its review."""
from __future__ import annotations

import pytest

from sightfleet import findterms
from sightfleet.contracts import SUCCEEDED, iso, new_image_id
from sightfleet.labelfilters import label_key
from sightfleet.labelindex import MAX_ALL_ENTRIES_PER_IMAGE, entries_for


def word(text: str, confidence: float = 95.0, kind: str = "WORD") -> dict:
    box = {"Width": 0.1, "Height": 0.05, "Left": 0.1, "Top": 0.1}
    return {"DetectedText": text, "Type": kind, "Id": 0, "Confidence": confidence,
            "Geometry": {"BoundingBox": box, "Polygon": [{"X": 0.1, "Y": 0.1}] * 4}}


def color(name: str, percent: float, hexcode: str = "#c81e1e") -> dict:
    return {"Red": 200, "Green": 30, "Blue": 30, "HexCode": hexcode, "CSSColor": "firebrick",
            "SimplifiedColor": name, "PixelPercent": percent}


def photo(owner: str = "alice", words=(), faces: int = 0, colors=(), labels=(), review=None) -> dict:
    return {"id": new_image_id(), "owner": owner, "album": "trip", "status": SUCCEEDED,
            "submitted_at": iso(1_800_000_000), "labels": [
                {"Name": n, "Confidence": 90.0, "Instances": [], "Parents": []} for n in labels],
            "text_detections": [word(w) if isinstance(w, str) else w for w in words],
            "face_details": [{"BoundingBox": {}, "Confidence": 99.0, "Landmarks": []}] * faces,
            "image_properties": {"DominantColors": list(colors)}, "review": review}


def keys(doc: dict) -> set[str]:
    return {e.key for e in entries_for(doc)}


def test_words_faces_and_colours_are_indexed_under_term_keys_beside_the_labels():
    doc = photo(words=["Kit", "CARSON,", "1850", word("blurry", 20.0), word("KIT CARSON 1850", kind="LINE")],
                faces=2, colors=[color("red", 40.0), color("Red", 10.0), color("white", 30.0)], labels=["Sign"])
    assert keys(doc) == {"sign", "\ttext:kit", "\ttext:carson", "\ttext:1850", "\tfaces", "\tfaces:2",
                         "\tcolor:red", "\tcolor:white"}
    red = next(e for e in entries_for(doc) if e.key == "\tcolor:red")
    assert red.confidence == 40.0 and red.name == "red"   # the largest share of the colour


@pytest.mark.parametrize("name", ["\ttext:carson", "  \tfaces ", "faces", "held", "~review", "\tcolor:red"])
def test_no_label_name_can_have_a_term_key(name):
    assert not findterms.is_term_key(label_key(name))


@pytest.mark.parametrize("text, key", [("Carson", "\ttext:carson"), ("«carson»!", "\ttext:carson"),
                                       ("STRASSE", "\ttext:strasse"), ("...", None), ("two words", None),
                                       ("x" * 41, None), ("état", "\ttext:état")])
def test_word_key(text, key):
    assert findterms.word_key(text) == key


def test_one_photo_adds_a_bounded_number_of_entries():
    doc = photo(words=[f"w{i}" for i in range(200)], faces=500,
                colors=[color(f"c{chr(97 + i)}", i) for i in range(20)], labels=[f"L{i}" for i in range(100)])
    found = entries_for(doc)
    assert len(found) <= MAX_ALL_ENTRIES_PER_IMAGE
    assert sum(e.key.startswith("\ttext:") for e in found) == findterms.MAX_WORDS
    assert sum(e.key.startswith("\tcolor:") for e in found) == findterms.MAX_COLORS
    assert f"\tfaces:{findterms.MAX_FACES}" in {e.key for e in found}


def test_a_held_photo_is_found_only_by_its_owners_held_list_and_the_review_list():
    doc = photo(words=["carson"], faces=1, labels=["Cat"], review={"flagged": True, "held": True})
    assert {(e.owner, e.key) for e in entries_for(doc)} == {("alice", "\theld"),
                                                            (findterms.REVIEW_OWNER, "\treview")}
    released = {**doc, "review": {"flagged": True, "held": False, "released_by": "admin", "released_at": "t"}}
    assert "\theld" not in keys(released) and {"cat", "\ttext:carson", "\tfaces"} <= keys(released)
    flagged = {**doc, "review": {"flagged": True, "held": False}}   # flag mode: found as any photo
    assert "cat" in keys(flagged)


def test_unreadable_answers_index_nothing_rather_than_fail():
    doc = photo()
    doc.update(text_detections=["x", {"Type": "WORD"}], face_details=[None], image_properties={"DominantColors": 3})
    assert keys(doc) == set()
