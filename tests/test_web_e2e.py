"""The web tier end to end: gunicorn, the local stack's controller and real workers with real models."""
from __future__ import annotations

import re
import uuid

import requests

from tests.support import TESTDATA, jpeg_bytes

GPS_PHOTO = TESTDATA / "exif-samples/jpg/gps/DSCN0010.jpg"


def post(stack, path: str, **kwargs) -> requests.Response:
    return stack.post(path, timeout=150, **kwargs)


def test_api_wait_returns_a_real_result_and_pages_show_it(local_stack):
    reply = post(local_stack, "/api/images?wait=60&album=e2e-web",
                 files=[("file", ("chelsea.jpg", jpeg_bytes(), "image/jpeg")),
                        ("file", ("DSCN0010.jpg", GPS_PHOTO.read_bytes(), "image/jpeg"))])
    assert reply.status_code == 200, reply.text
    cat, gps = reply.json()["images"]
    assert cat["status"] == "SUCCEEDED" and gps["status"] == "SUCCEEDED", reply.text
    assert any("cat" in label["Name"].lower() for label in cat["labels"]), cat["labels"]
    assert all(0 <= label["Confidence"] <= 100 for label in cat["labels"])
    assert cat["instance_id"].startswith("i-") and cat["timings"]
    assert requests.get(cat["annotated_url"], timeout=10).content[:3] == b"\xff\xd8\xff"
    assert gps["metadata"]["gps"]["latitude_decimal"] and gps["metadata"]["camera_make"]

    page = local_stack.get(gps["page_url"], headers={"Accept": "text/html"}, timeout=10).text
    assert '<span class="badge succeeded">' in page and "<th>GPS</th>" in page and "<th>Camera</th>" in page
    assert f"<code>{gps['instance_id']}</code>" in page
    listing = local_stack.get("/api/images?album=e2e-web", timeout=10).json()
    assert {i["id"] for i in listing["images"]} == {cat["id"], gps["id"]}


def test_cse546_endpoint_through_gunicorn(local_stack):
    reply = post(local_stack, "/", files={"myfile": ("test_42.jpg", jpeg_bytes("coffee"), "image/jpeg")})
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/plain")
    assert re.fullmatch(r"test_42:[^:\n]+", reply.text) and not reply.text.endswith(":unknown"), reply.text
    bad = post(local_stack, "/", files={"inputFile": ("x.tiff", (TESTDATA / "exif-samples/tiff/Arbitro.tiff").read_bytes())})
    assert bad.status_code == 415


def test_an_upload_asking_for_text_and_faces_is_found_by_a_word_and_by_its_faces(local_stack):
    from tests.test_rekognition_e2e import sign_photo
    album = f"e2e-features-{uuid.uuid4().hex[:6]}"
    reply = post(local_stack, f"/api/images?wait=60&album={album}&features=labels,text,faces,properties",
                 files=[("file", ("sign.jpg", sign_photo(), "image/jpeg")),
                        ("file", ("astronaut.jpg", jpeg_bytes("astronaut"), "image/jpeg"))])
    assert reply.status_code == 200, reply.text
    sign, person = reply.json()["images"]
    assert sign["status"] == person["status"] == "SUCCEEDED", reply.text
    assert {"FRESH", "COFFEE"} <= {w["DetectedText"].upper() for w in sign["text_detections"]
                                   if w["Type"] == "WORD"}, sign["text_detections"]
    assert len(person["face_details"]) == 1 and sign["face_details"] == []
    assert person["image_properties"]["DominantColors"] and "moderation" in person["features"]
    found = local_stack.get(f"/api/images?text=fresh&album={album}", timeout=10).json()["images"]
    assert [i["id"] for i in found] == [sign["id"]]
    with_faces = local_stack.get(f"/api/images?faces=1&album={album}", timeout=10).json()["images"]
    assert [i["id"] for i in with_faces] == [person["id"]]
