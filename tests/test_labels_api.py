"""Search and browse by label, and per-request label filters, through the Flask test client on the real local
endpoint, with the real worker (models included) processing the uploads: a real cat photo is found by its
names, aliases and ancestors, by its owner only; filters on upload and on read; the index follows deletes.
"""
from __future__ import annotations

import io
from collections import Counter

import pytest

from app_tier.heartbeat import Heartbeat
from app_tier.jobs import BatchRunner
from sightfleet.contracts import Job
from tests.pipeline_fixtures import shared_pipeline
from tests.support import jpeg_bytes, keyed_client
from tests.test_web_helpers import finish

HTML = {"Accept": "text/html"}


def process(resources) -> None:
    """Run what the request queue holds through the real worker code and models, on the local endpoint."""
    runner = BatchRunner(resources, shared_pipeline(), "i-test", Heartbeat(resources, "i-test", dict), Counter())
    intake = runner.take(resources.requests.receive(10, 1))
    if intake:
        runner.run(intake)
    runner.close()


def upload(client, album: str = "pets", name: str = "chelsea", query: str = "", **form) -> dict:
    data = {"file": (io.BytesIO(jpeg_bytes(name, scale=0.5)), f"{name}.jpg"), **form}
    reply = client.post(f"/api/images?album={album}{query}", data=data)
    assert reply.status_code == 202, reply.get_json()
    return reply.get_json()["images"][0]


def found(client, label: str, **params) -> list[str]:
    reply = client.get("/api/images", query_string={"label": label, **params})
    assert reply.status_code == 200, reply.get_json()
    return [image["id"] for image in reply.get_json()["images"]]


@pytest.fixture
def cat(client, resources) -> dict:
    image = upload(client)
    process(resources)
    return client.get(image["status_url"]).get_json()


def test_a_cat_photo_is_found_by_its_names_aliases_and_ancestors_and_not_by_vehicle(client, cat):
    assert cat["status"] == "SUCCEEDED" and "Cat" in [label["Name"] for label in cat["labels"]]
    for term in ("cat", "Cat", "  KITTY ", "Domestic cat", "Pet", "Animal", "mammal"):
        assert found(client, term) == [cat["id"]], term
    assert found(client, "Vehicle") == [] and found(client, "Cat", album="other") == []
    assert found(client, "cat", album="pets", status="SUCCEEDED") == [cat["id"]]
    assert found(client, "cat", status="QUEUED") == [] and found(client, "cat", MinConfidence="100") == []
    assert found(client, "flibbertigibbet") == []      # no such label: nothing carries it
    too_long = client.get("/api/images?label=" + "x" * 101)
    assert too_long.status_code == 400 and too_long.get_json()["error"]["code"] == "BAD_LABEL"


def test_labels_are_counted_per_owner_and_album_most_frequent_first(client, resources, cat):
    upload(client, album="trip")
    upload(client, album="trip", name="coffee")
    process(resources)
    counts = {c["name"]: c["count"] for c in client.get("/api/labels").get_json()["labels"]}
    assert counts["Cat"] == 2 and counts["Animal"] == 2 and counts["Cup"] == 1
    listed = client.get("/api/labels").get_json()["labels"]
    assert [c["count"] for c in listed] == sorted((c["count"] for c in listed), reverse=True)
    trip = {c["name"]: c for c in client.get("/api/labels?album=trip").get_json()["labels"]}
    assert trip["Cat"]["count"] == 1 and trip["Cat"]["search_url"] == "/api/images?label=Cat&album=trip"
    page = client.get("/labels", headers=HTML).get_data(as_text=True)
    assert 'href="/gallery?label=Cat">Cat</a></td>\n    <td class="num">2</td>' in page


def test_another_owner_finds_counts_and_is_suggested_nothing_of_mine(app, resources, client, cat):
    other = keyed_client(app, resources, "other")
    assert found(other, "cat") == [] and found(other, "Animal") == []
    assert other.get("/api/labels").get_json()["labels"] == []
    assert "Cat" not in other.get("/gallery", headers=HTML).get_data(as_text=True)
    assert 'value="Cat"' in client.get("/gallery", headers=HTML).get_data(as_text=True)   # mine: suggested
    own = other.get(f"/api/images?label=cat&owner={cat['owner']}")
    assert own.status_code == 403
    admin = keyed_client(app, resources, "root", admin=True)
    assert found(admin, "cat", owner=cat["owner"]) == [cat["id"]]
    every = admin.get("/api/images?label=cat&owner=*")
    assert every.status_code == 400 and every.get_json()["error"]["code"] == "BAD_OWNER"


def test_a_search_pages_with_its_own_cursors_which_fit_no_other_listing(client, resources):
    ids = [upload(client)["id"] for _ in range(3)]
    process(resources)
    first = client.get("/api/images?label=cat&limit=2").get_json()
    second = client.get(f"/api/images?label=cat&limit=2&cursor={first['next_cursor']}").get_json()
    assert [i["id"] for i in first["images"] + second["images"]] == ids[::-1] and second["next_cursor"] is None
    for other in (f"label=dog&cursor={first['next_cursor']}", f"cursor={first['next_cursor']}",
                  f"label=cat&album=x&cursor={first['next_cursor']}"):
        reply = client.get(f"/api/images?{other}")
        assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "BAD_CURSOR", other


def test_deleting_the_photo_takes_it_out_of_search_and_counts(client, resources, cat):
    assert resources.labels.entries(cat["id"])
    assert client.delete(cat["status_url"]).status_code == 204
    assert found(client, "cat") == [] and client.get("/api/labels").get_json()["labels"] == []
    assert resources.labels.entries(cat["id"]) == []


def test_upload_filters_travel_in_the_job_and_shape_what_is_shown(client, resources):
    image = upload(client, query="&LabelInclusionFilters=kitty", MinConfidence="60")
    [message] = resources.requests.receive(10, 1)
    job = Job.from_message(message.body)
    assert job.filters == {"MinConfidence": 60.0, "LabelInclusionFilters": ["Cat"]}
    resources.requests.set_visibility([message.receipt], 0)
    process(resources)
    shown = client.get(image["status_url"]).get_json()
    assert shown["label_filters"] == job.filters and [label["Name"] for label in shown["labels"]] == ["Cat"]
    lowered = client.get(image["status_url"] + "?MinConfidence=0").get_json()
    assert [label["Name"] for label in lowered["labels"]] == ["Cat"]   # the upload's inclusion still applies
    other = client.get(image["status_url"] + "?LabelInclusionFilters=Vehicle").get_json()
    assert other["labels"] == [] and other["top_label"] is None     # a read's own list replaces the upload's


@pytest.mark.parametrize("query, code", [
    ("MinConfidence=101", "BAD_MINCONFIDENCE"), ("MinConfidence=-1", "BAD_MINCONFIDENCE"),
    ("MinConfidence=nan", "BAD_MINCONFIDENCE"), ("MaxLabels=1.5", "BAD_MAXLABELS"),
    ("MaxLabels=1001", "BAD_MAXLABELS"), ("LabelInclusionFilters=Flibbertigibbet", "BAD_FILTER"),
    ("LabelCategoryExclusionFilters=Not a category", "BAD_FILTER"),
    ("LabelExclusionFilters=" + ",".join(["Cat"] * 101), "BAD_FILTER"),
])
def test_bad_filters_are_refused_with_400_on_upload_and_read(client, resources, query, code):
    reply = client.post(f"/api/images?{query}", data={"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "x.jpg")})
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == code
    assert resources.requests.counts()["visible"] == 0   # refused before anything was queued
    image = client.post("/api/images", data={"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "x.jpg")}).get_json()
    reply = client.get(f"/api/images/{image['images'][0]['id']}?{query}")
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == code


LABELS = [
    {"Name": "Cat", "Confidence": 91.0, "Instances": [], "Parents": [{"Name": "Pet"}],
     "Categories": [{"Name": "Animals and Pets"}]},
    {"Name": "Pet", "Confidence": 91.0, "Instances": [], "Parents": [], "Categories": [{"Name": "Animals and Pets"}]},
    {"Name": "Couch", "Confidence": 48.0, "Instances": [], "Parents": [],
     "Categories": [{"Name": "Furniture and Furnishings"}]},
    {"Name": "Pillow", "Confidence": 30.0, "Instances": [], "Parents": [],
     "Categories": [{"Name": "Home and Indoors"}]},
]


@pytest.mark.parametrize("query, names", [
    ("", ["Cat", "Pet"]),                                     # what passed the vocabulary's thresholds
    ("MinConfidence=0", ["Cat", "Pet", "Couch", "Pillow"]),   # weaker ones, stored too: a read may ask for them
    ("MinConfidence=40", ["Cat", "Pet", "Couch"]),
    ("MinConfidence=40&MaxLabels=2", ["Cat", "Pet"]),
    ("MinConfidence=0&LabelInclusionFilters=couch,kitty", ["Cat", "Couch"]),
    ("MinConfidence=0&LabelCategoryInclusionFilters=animals and pets&LabelExclusionFilters=Pet", ["Cat"]),
    ("MinConfidence=0&LabelCategoryExclusionFilters=Animals and Pets", ["Couch", "Pillow"]),
    ("MinConfidence=0&LabelInclusionFilters=Pillow&LabelCategoryInclusionFilters=Furniture and Furnishings",
     ["Couch", "Pillow"]),
    ("MaxLabels=0", []),
])
def test_read_filters_as_rekognition_applies_them(client, resources, query, names):
    image = upload(client)
    finish(resources, image["id"], labels=LABELS[:2], weaker_labels=LABELS[2:], top_label="Cat")
    shown = client.get(f"{image['status_url']}?{query}").get_json()
    assert [label["Name"] for label in shown["labels"]] == names
    assert shown["top_label"] == (names[0] if names else None)
