"""More than labels through the Flask test client on the real local endpoint: uploads name their features
(400 at the door for bad ones), accounts keep a default; words, faces and colours are searched per owner
through the index and never counted as labels; a held photo is hidden until an admin releases it."""
from __future__ import annotations

import io
import json

import pytest

from sightfleet import labelindex
from sightfleet.contracts import Job
from tests.support import jpeg_bytes, keyed_client
from tests.test_findterms import color, word
from tests.test_web_helpers import finish

HTML = {"Accept": "text/html"}


def upload(client, query: str = "", **form) -> dict:
    data = {"file": (io.BytesIO(jpeg_bytes(scale=0.2)), "photo.jpg"), **form}
    reply = client.post(f"/api/images?album=trip{query}", data=data)
    assert reply.status_code == 202, reply.get_json()
    return reply.get_json()["images"][0]


def queued_jobs(resources) -> list[Job]:
    return [Job.from_message(m.body) for m in resources.requests.receive(10, 1)]


def answered(resources, image: dict, words=(), faces: int = 0, colors=(), review=None) -> dict:
    """Finish an uploaded photo as a worker with these answers would, and index it as the worker does."""
    done = finish(resources, image["id"], text_detections=[word(w) for w in words],
                  face_details=[{"BoundingBox": {"Width": .2, "Height": .2, "Left": .1, "Top": .1},
                                 "Confidence": 99.0, "Landmarks": []}] * faces,
                  image_properties={"Quality": {"Brightness": 61.5, "Sharpness": 80.0, "Contrast": 40.2},
                                    "DominantColors": list(colors)},
                  moderation_labels=[{"Name": "Violence", "ParentName": "", "Confidence": 91.0,
                                      "TaxonomyLevel": 1}] if review else [], review=review)
    labelindex.sync(resources.labels, done, resources.settings.min_confidence)
    return done


def ids(client, **params) -> list[str]:
    reply = client.get("/api/images", query_string=params)
    assert reply.status_code == 200, reply.get_json()
    return [image["id"] for image in reply.get_json()["images"]]


@pytest.fixture
def other(app, resources):
    return keyed_client(app, resources, "other")


# --- asking for features ------------------------------------------------------------------------------------

def test_features_from_the_query_or_the_form_go_into_the_job_and_the_queued_result(client, resources):
    by_query = upload(client, "&features=text,Faces")
    by_form = upload(client, features=["properties", "text"])
    plain = upload(client)
    jobs = {job.id: job.features for job in queued_jobs(resources)}
    # The stack moderates (flag, by default): moderation is added whatever was asked.
    assert jobs[by_query["id"]] == ("text", "faces", "moderation") == tuple(by_query["features"])
    assert jobs[by_form["id"]] == ("text", "properties", "moderation")
    assert jobs[plain["id"]] == ("labels", "faces", "properties", "moderation")


@pytest.mark.parametrize("query, form, needle", [
    ("&features=labels,ocr", {}, "unknown feature(s) 'ocr'"), ("&features=", {}, "name at least one"),
    ("", {"features": "colour"}, "choose from labels, text"), ("&features=" + "x" * 201, {}, "at most 200"),
    ("&features=,,", {}, "name at least one feature"),
])
def test_a_bad_features_value_is_refused_before_any_work(client, resources, query, form, needle):
    reply = client.post(f"/api/images?album=trip{query}", data={
        "file": (io.BytesIO(jpeg_bytes(scale=0.2)), "photo.jpg"), **form})
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "BAD_FEATURES"
    assert needle in reply.get_json()["error"]["message"]
    assert queued_jobs(resources) == [] and ids(client) == []


def test_an_accounts_default_applies_to_its_uploads_only_and_admins_can_read_it(client, other, admin_client,
                                                                               resources):
    assert client.get("/api/account/features").get_json()["default_features"] is None
    put = client.put("/api/account/features", json={"features": ["text", "labels"]})
    assert put.status_code == 200 and put.get_json()["default_features"] == ["labels", "text"]
    assert put.get_json()["effective_features"] == ["labels", "text", "moderation"]
    mine, theirs = upload(client), upload(other)
    assert tuple(mine["features"]) == ("labels", "text", "moderation")
    assert tuple(theirs["features"]) == ("labels", "faces", "properties", "moderation")
    assert upload(client, "&features=faces")["features"] == ["faces", "moderation"]   # the upload's own wins
    bad = client.put("/api/account/features", json={"features": "labels,gps"})
    assert bad.status_code == 400 and "gps" in bad.get_json()["error"]["message"]
    assert other.get("/api/account/features?account=tester").status_code == 403
    seen = admin_client.get("/api/account/features?account=tester").get_json()
    assert seen["account"] == "tester" and seen["default_features"] == ["labels", "text"]
    assert client.put("/api/account/features", json={"features": None}).get_json()["default_features"] is None


# --- searching words, faces, colours --------------------------------------------------------------------------

@pytest.fixture
def photos(client, other, resources) -> dict:
    sign = answered(resources, upload(client), words=["Kit", "CARSON", "1850"], faces=2,
                    colors=[color("red", 45.0), color("white", 30.0, "#f0f0f0")])
    face = answered(resources, upload(client), faces=1, colors=[color("blue", 60.0, "#1e3cc8")])
    theirs = answered(resources, upload(other), words=["carson"], faces=2, colors=[color("red", 70.0)])
    return {"sign": sign["id"], "face": face["id"], "theirs": theirs["id"]}


def test_words_faces_and_colours_find_the_callers_own_photos_only(client, other, photos):
    sign, face, theirs = photos["sign"], photos["face"], photos["theirs"]
    assert ids(client, text="carson") == ids(client, text="Carson!") == [sign]
    assert ids(other, text="CARSON") == [theirs] and ids(client, text="1850") == [sign]
    assert ids(client, faces="true") == [face, sign] and ids(client, faces="2") == [sign]
    assert ids(client, faces="1") == [face] and ids(client, faces="3") == []
    assert ids(client, color="red") == [sign] and ids(client, color="Blue") == [face]
    assert ids(other, color="red") == [theirs] and ids(other, faces="1") == []
    assert ids(client, text="carson", album="elsewhere") == [] and ids(client, color="red", album="trip") == [sign]


def test_search_terms_are_never_counted_or_listed_as_labels(client, photos):
    names = [label["name"] for label in client.get("/api/labels").get_json()["labels"]]
    assert names and not any(n.startswith("\t") or n in ("carson", "faces", "red", "2 faces") for n in names)
    page = client.get("/labels", headers=HTML).get_data(as_text=True)
    assert "carson" not in page.lower() and "2 faces" not in page
    # A label search for a term's own key finds nothing: the keys cannot meet.
    assert ids(client, label="\ttext:carson") == [] and ids(client, label="faces") == []


@pytest.mark.parametrize("params, code", [
    ({"text": "kit carson"}, "BAD_TEXT"), ({"text": "x" * 41}, "BAD_TEXT"), ({"text": "!!"}, "BAD_TEXT"),
    ({"faces": "0"}, "BAD_FACES"), ({"faces": "-1"}, "BAD_FACES"), ({"faces": "101"}, "BAD_FACES"),
    ({"faces": "false"}, "BAD_FACES"), ({"color": "r3d"}, "BAD_COLOR"), ({"held": "no"}, "BAD_HELD"),
    ({"text": "carson", "color": "red"}, "BAD_SEARCH"), ({"label": "cat", "faces": "true"}, "BAD_SEARCH"),
])
def test_bad_search_values_get_a_clear_400(client, params, code):
    reply = client.get("/api/images", query_string=params)
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == code, reply.get_json()


def test_a_search_cursor_continues_its_own_search_only(client, resources):
    for _ in range(3):
        answered(resources, upload(client), faces=1)
    first = client.get("/api/images?faces=1&limit=2").get_json()
    rest = client.get(f"/api/images?faces=1&limit=2&cursor={first['next_cursor']}").get_json()
    assert len(first["images"]) == 2 and len(rest["images"]) == 1 and rest["next_cursor"] is None
    other_search = client.get(f"/api/images?faces=true&limit=2&cursor={first['next_cursor']}")
    assert other_search.status_code == 400 and other_search.get_json()["error"]["code"] == "BAD_CURSOR"


def test_deleting_a_photo_takes_its_terms_out_of_the_index(client, resources, photos):
    owner = client.get(f"/api/images/{photos['sign']}").get_json()["owner"]
    assert resources.labels.term_count(owner, "\tcolor:red") == 1
    assert client.delete(f"/api/images/{photos['sign']}").status_code == 204
    assert resources.labels.entries(photos["sign"]) == [] and ids(client, text="carson") == []
    assert resources.labels.term_count(owner, "\tcolor:red") == 0 and ids(client, faces="true") == [photos["face"]]


# --- moderation's hold ------------------------------------------------------------------------------------------

HELD = {"flagged": True, "held": True}


@pytest.fixture
def held(client, resources) -> dict:
    shown = answered(resources, upload(client), words=["carson"], faces=1, colors=[color("red", 50.0)])
    return {"shown": shown["id"], "held": answered(resources, upload(client), words=["carson"], faces=1,
                                                   review=HELD)["id"]}


def test_a_held_photo_is_hidden_from_every_listing_and_search_but_marked_for_its_owner(client, other, held,
                                                                                       admin_client):
    shown, hidden = held["shown"], held["held"]
    for params in ({}, {"album": "trip"}, {"label": "cat"}, {"text": "carson"}, {"faces": "true"}):
        assert ids(client, **params) == [shown], params
    assert ids(client, held="true") == [hidden]
    mine = client.get(f"/api/images/{hidden}").get_json()
    assert mine["review"] == HELD and mine["moderation_labels"][0]["Name"] == "Violence"
    assert other.get(f"/api/images/{hidden}").status_code == 404 and ids(other, held="true") == []
    page = client.get(f"/images/{hidden}", headers=HTML).get_data(as_text=True)
    assert 'id="held"' in page and "Violence" in page
    gallery = client.get("/gallery", headers=HTML).get_data(as_text=True)
    assert hidden not in gallery and 'id="held-link"' in gallery and "1 photo held for review" in gallery
    assert "cat" not in [c["name"].lower() for c in client.get("/api/labels").get_json()["labels"]
                         if c["count"] > 1]   # counted once: the shown photo only
    review = admin_client.get("/api/ops/review").get_json()
    assert review["waiting"] == 1 and [i["id"] for i in review["images"]] == [hidden]
    assert admin_client.get(f"/api/images?owner={mine['owner']}").status_code == 200


def test_only_admins_see_the_review_list_and_release(client, held):
    assert client.get("/api/ops/review").status_code == 403
    assert client.post("/api/ops/review/release", json={"image_id": held["held"]}).status_code == 403
    assert ids(client, held="true") == [held["held"]]


def test_an_admins_release_shows_the_photo_again_audited_and_indexed(client, admin_client, held):
    hidden = held["held"]
    reply = admin_client.post("/api/ops/review/release", json={"image_id": hidden})
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["review"]["held"] is False and reply.get_json()["review"]["released_by"] == "admin"
    assert set(ids(client, text="carson")) == {held["shown"], hidden} and ids(client, held="true") == []
    assert hidden in ids(client) and admin_client.get("/api/ops/review").get_json() == {
        "waiting": 0, "images": [], "next_cursor": None}
    audit = admin_client.get("/api/ops/summary").get_json()["audit"]
    assert any(a["action"] == "release" and a["details"]["image_id"] == hidden for a in audit)
    again = admin_client.post("/api/ops/review/release", json={"image_id": hidden})
    assert again.status_code == 200   # a repeat only indexes again
    never = admin_client.post("/api/ops/review/release", json={"image_id": held["shown"]})
    assert never.status_code == 409 and never.get_json()["error"]["code"] == "NOT_HELD"
    for body in ({}, {"image_id": "../x"}, {"image_id": 3}, {"id": hidden}):
        assert admin_client.post("/api/ops/review/release", json=body).status_code == 400, body
    assert 'id="released"' in client.get(f"/images/{hidden}", headers=HTML).get_data(as_text=True)


def test_the_image_page_shows_the_new_answers_escaped(client, resources):
    image = upload(client, "&features=text,faces,properties")
    done = finish(resources, image["id"], text_detections=[word("<script>alert(1)</script>", kind="LINE")],
                  face_details=[{"BoundingBox": {}, "Confidence": 99.0, "Landmarks": []}] * 3,
                  image_properties={"Quality": {"Brightness": 61.5, "Sharpness": 80.0, "Contrast": 40.2},
                                    "DominantColors": [color("<b>red</b>", 40.0),
                                                       color("blue", 20.0, "#123456\" onload=\"x")]})
    page = client.get(f"/images/{done['id']}", headers=HTML).get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<strong id="face-count">3</strong>' in page and "&lt;b&gt;red&lt;/b&gt;" in page
    assert 'fill="#c81e1e"' in page and "onload" not in page   # a swatch takes a checked hex code only
    assert "Sharpness" in page and "80.0" in page
    assert json.loads(client.get(f"/api/images/{done['id']}").get_data())["image_properties"]["Quality"]
