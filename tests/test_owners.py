"""Owners: two users never see or touch each other's images through any route; admins see all;
deleting an image or an album removes everything it made. Through the real local endpoint, except the
failures part-way, which use the in-memory fakes.
"""
from __future__ import annotations

import html
import io
import json
import re
from collections import Counter

import boto3
import pytest

from app_tier.heartbeat import Heartbeat
from app_tier.jobs import BatchRunner

from sightfleet.config import Settings
from sightfleet.contracts import ANONYMOUS_OWNER, DELETED, Job, Result, new_image_id, output_keys, utc_now
from sightfleet.errors import InvalidJob
from sightfleet.memory import memory_resources
from tests.pipeline_fixtures import shared_pipeline
from tests.support import jpeg_bytes
from tests.test_web_helpers import QueueFinisher, finish
from web_tier import identity
from web_tier.accounts import AccountError, Accounts
from web_tier.services import services_of

HTML = {"Accept": "text/html"}


def signer(resources):
    """sign(name, admin=False) -> headers carrying a real API key of account `name`, made on first use.

    Its account id is set to `name`, through the real store, so the tests can read owners and S3 keys
    as `alice` rather than a random id (and can try owner ids that real accounts never get).
    """
    accounts, keys = Accounts(resources.accounts), {}

    def sign(name: str, admin: bool = False) -> dict:
        if (name, admin) not in keys:
            try:
                account, _ = accounts.create(f"{name}-admin" if admin else name, admin=admin)
            except AccountError:   # a hostile owner id no user name could be: the id alone carries it
                account, _ = accounts.create(f"user-{len(keys)}", admin=admin)
            account = {**account, "account_id": name}
            resources.accounts.update_account(account)
            keys[name, admin] = accounts.issue_key(account, "test").key
        return {"Authorization": f"Bearer {keys[name, admin]}"}
    return sign


@pytest.fixture
def as_user(app):
    """as_user(name, admin=False) -> the headers that make a request that account's (the one way tests sign in)."""
    return signer(services_of(app).resources)


def with_token(client, headers: dict) -> dict:
    """The headers, with the CSRF token a browser's page adds once the client holds the cookie."""
    cookie = client.get_cookie("sightfleet_csrf")
    return {**headers, "X-CSRF-Token": cookie.value} if cookie else headers


def upload(client, headers: dict, album: str = "trip", name: str = "cat.jpg", data: bytes | None = None) -> dict:
    reply = client.post("/api/images", query_string={"album": album, "filename": name},
                        data=data or jpeg_bytes(scale=0.3), content_type="image/jpeg",
                        headers=with_token(client, headers))
    assert reply.status_code == 202, reply.data
    return reply.get_json()["images"][0]


def token_of(client, headers: dict) -> str:
    page = client.get("/", headers={**HTML, **headers}).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def every_key(settings: Settings) -> set[str]:
    s3 = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    return {o["Key"] for b in (settings.names.input_bucket, settings.names.output_bucket)
            for o in s3.list_objects_v2(Bucket=b).get("Contents", [])}


def raw_item(settings: Settings, image_id: str) -> dict | None:
    ddb = boto3.client("dynamodb", endpoint_url=settings.endpoint_url, region_name=settings.region)
    return ddb.get_item(TableName=settings.names.results_table, Key={"id": {"S": image_id}},
                        ConsistentRead=True).get("Item")


def store_everything(resources, image: dict) -> dict:
    """Finish an image as a worker would and store all five artefacts (original, thumbnail, annotated, JSON, row)."""
    result = finish(resources, image["id"], data=jpeg_bytes(scale=0.3))
    resources.inputs.put(result["input_key"], jpeg_bytes(scale=0.3), "image/jpeg")
    result_key = output_keys(result["owner"], result["id"])["result"]
    resources.outputs.put(result_key, json.dumps(result).encode(), "application/json")
    return result


@pytest.fixture
def two_users(client, resources, as_user):
    """alice's and bob's finished photos, in albums of the same name."""
    alice, bob = as_user("alice"), as_user("bob")
    a = store_everything(resources, upload(client, alice, album="trip"))
    b = store_everything(resources, upload(client, bob, album="trip"))
    return alice, bob, a, b


def test_owner_travels_in_the_job_the_row_and_every_key(client, resources, as_user):
    # Too large to travel inline: a pointer job.
    image = upload(client, as_user("alice"), data=jpeg_bytes("astronaut", scale=4.0, quality=98))
    [message] = resources.requests.receive(10, 1)
    job = Job.from_message(message.body)
    assert job.owner == "alice" and job.key == f"originals/alice/{image['id']}.jpg"
    assert resources.results.get(image["id"])["owner"] == "alice"
    assert resources.inputs.get(job.key)[:3] == b"\xff\xd8\xff"
    result = Result.queued(job).succeeded(_Outcome())
    assert result.thumbnail_key == f"thumbnails/alice/{image['id']}.jpg"
    assert result.annotated_key == f"annotated/alice/{image['id']}.jpg"
    assert result.result_key == f"results/alice/{image['id']}.json"


class _Outcome:
    labels, top_label, metadata, timings = (), None, {}, {}
    thumbnail, thumbnail_content_type, annotated = b"t", "image/jpeg", b"a"
    label_model_version, weaker_labels = None, ()
    text_detections, face_details, moderation_labels, image_properties, review, model_versions = (), (), (), None, None, {}


def test_another_owners_image_answers_exactly_like_a_missing_one(client, two_users):
    alice, bob, a, b = two_users
    missing = new_image_id()
    for path in ("/api/images/{}", "/api/images/{}?wait=0.5"):
        theirs, nothing = client.get(path.format(a["id"]), headers=bob), client.get(path.format(missing), headers=bob)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.get_json() == nothing.get_json() == {"error": {"code": "NOT_FOUND", "message": "no such image"}}
    page_of_theirs = client.get(f"/images/{a['id']}", headers={**HTML, **bob})
    page_of_nothing = client.get(f"/images/{missing}", headers={**HTML, **bob})
    assert page_of_theirs.status_code == page_of_nothing.status_code == 404
    assert page_of_theirs.get_data(as_text=True) == page_of_nothing.get_data(as_text=True)
    assert client.get(f"/api/images/{a['id']}", headers=alice).status_code == 200


def test_listings_galleries_albums_and_links_show_only_the_callers_own(client, two_users, resources):
    alice, bob, a, b = two_users
    for query in ("", "?album=trip", "?status=SUCCEEDED", "?limit=100"):
        listing = client.get(f"/api/images{query}", headers=bob)
        assert [i["id"] for i in listing.get_json()["images"]] == [b["id"]], query
        text = listing.get_data(as_text=True)
        assert a["id"] not in text and "/alice/" not in text   # no presigned link to alice's files either
    for page in ("/gallery", "/gallery?album=trip", "/", f"/images/{b['id']}"):
        text = client.get(page, headers={**HTML, **bob}).get_data(as_text=True)
        assert a["id"] not in text and "/alice/" not in text, page
    # Albums are per owner: alice's new album is not offered to bob.
    upload(client, alice, album="Secret plans")
    assert "Secret plans" in client.get("/", headers={**HTML, **alice}).get_data(as_text=True)
    assert "Secret plans" not in client.get("/", headers={**HTML, **bob}).get_data(as_text=True)
    assert "Secret plans" not in client.get("/gallery", headers={**HTML, **bob}).get_data(as_text=True)


def test_a_user_cannot_list_another_owner_or_continue_their_listing(client, two_users, resources):
    alice, bob, a, b = two_users
    upload(client, alice)
    assert client.get("/api/images?owner=alice", headers=bob).status_code == 403
    assert client.get("/api/images?owner=*", headers=bob).status_code == 403
    assert client.get("/gallery?owner=alice", headers={**HTML, **bob}).status_code == 403
    cursor = client.get("/api/images?limit=1", headers=alice).get_json()["next_cursor"]
    assert cursor
    stolen = client.get(f"/api/images?limit=1&cursor={cursor}", headers=bob)
    assert stolen.status_code == 400 and stolen.get_json()["error"]["code"] == "BAD_CURSOR"
    assert client.get(f"/api/images?limit=1&cursor={cursor}", headers=alice).status_code == 200


def test_a_user_cannot_delete_another_owners_image_or_album(client, two_users, resources, settings):
    alice, bob, a, b = two_users
    before = every_key(settings)
    reply = client.delete(f"/api/images/{a['id']}", headers=bob)
    assert reply.status_code == 404 and reply.get_json()["error"]["code"] == "NOT_FOUND"
    form = client.post(f"/images/{a['id']}/delete", data={"csrf_token": token_of(client, bob)},
                       headers={**HTML, **bob})
    assert form.status_code == 404
    bob = with_token(client, bob)
    assert client.delete("/api/albums/trip?owner=alice", headers=bob).status_code == 403
    assert client.delete("/api/albums/trip", headers=bob).get_json() == {"album": "trip", "deleted": 1}
    assert client.get(f"/api/images/{a['id']}", headers=alice).status_code == 200
    assert {k for k in before if "/alice/" in k} <= every_key(settings)
    assert client.get(f"/api/images/{b['id']}", headers=bob).status_code == 404


def test_waiting_on_an_upload_answers_with_the_callers_result(client, resources, as_user):
    QueueFinisher(resources, 1, top="cat").start()
    reply = client.post("/api/images?wait=20", data=jpeg_bytes(scale=0.3), content_type="image/jpeg",
                        headers=as_user("alice"))
    assert reply.status_code == 200
    [image] = reply.get_json()["images"]
    assert image["status"] == "SUCCEEDED" and image["owner"] == "alice"


def test_admins_read_list_and_browse_every_owner(client, two_users, as_user):
    alice, bob, a, b = two_users
    admin = as_user("root", admin=True)
    for image in (a, b):
        assert client.get(f"/api/images/{image['id']}", headers=admin).status_code == 200
        assert client.get(f"/images/{image['id']}", headers={**HTML, **admin}).status_code == 200
    assert client.get("/api/images", headers=admin).get_json()["images"] == []   # an admin's own, by default
    of_alice = client.get("/api/images?owner=alice", headers=admin).get_json()["images"]
    assert [i["id"] for i in of_alice] == [a["id"]]
    every = client.get("/api/images?owner=*", headers=admin).get_json()["images"]
    assert {i["id"] for i in every} == {a["id"], b["id"]}
    gallery = client.get("/gallery?owner=alice&album=trip", headers={**HTML, **admin}).get_data(as_text=True)
    assert a["id"] in gallery and b["id"] not in gallery and "Photos of alice" in gallery
    every_page = client.get("/gallery?owner=*", headers={**HTML, **admin}).get_data(as_text=True)
    assert a["id"] in every_page and b["id"] in every_page and "Every owner&#39;s photos" in every_page
    assert 'data-live="/api/images?limit=20&amp;owner=*"' in every_page   # live polling lists the same owners


def test_rows_from_before_owners_belong_to_the_anonymous_owner_and_only_admins_read_them(
        client, resources, settings, as_user):
    image_id = new_image_id()
    legacy = {"id": image_id, "album": "default", "filename": "old.jpg", "content_type": "image/jpeg", "size": 3,
              "submitted_at": utc_now(), "updated_at": utc_now(), "input_key": f"originals/{image_id}.jpg",
              "status": "SUCCEEDED", "thumbnail_key": f"thumbnails/{image_id}.jpg"}
    ddb = boto3.client("dynamodb", endpoint_url=settings.endpoint_url, region_name=settings.region)
    ddb.put_item(TableName=settings.names.results_table, Item={   # as the code before owners wrote it
        "id": {"S": image_id}, "kind": {"S": "image"}, "album": {"S": "default"}, "status": {"S": "SUCCEEDED"},
        "submitted_at": {"S": legacy["submitted_at"]}, "updated_at": {"S": legacy["updated_at"]},
        "doc": {"S": json.dumps(legacy)}})
    resources.inputs.put(legacy["input_key"], b"old", "image/jpeg")
    resources.outputs.put(legacy["thumbnail_key"], b"old", "image/jpeg")
    assert Result.from_dict(legacy).owner == ANONYMOUS_OWNER
    old_job = {"v": 1, **{k: legacy[k] for k in ("id", "album", "filename", "content_type", "submitted_at", "size")},
               "inline_b64": ""}
    assert Job.from_message(json.dumps(old_job)).owner == ANONYMOUS_OWNER
    assert client.get(f"/api/images/{image_id}", headers=as_user("alice")).status_code == 404
    admin = as_user("root", admin=True)
    assert client.get(f"/api/images/{image_id}", headers=admin).get_json()["filename"] == "old.jpg"
    assert image_id in {i["id"] for i in client.get("/api/images?owner=*", headers=admin).get_json()["images"]}
    assert client.delete(f"/api/images/{image_id}", headers=admin).status_code == 204
    assert image_id not in str(every_key(settings))


def test_delete_removes_the_row_and_all_its_files_and_a_retry_is_a_no_op(client, resources, settings, as_user):
    alice = as_user("alice")
    keep = store_everything(resources, upload(client, alice, name="keep.jpg"))
    gone = store_everything(resources, upload(client, alice, name="gone.jpg"))
    files = {k for k in every_key(settings) if gone["id"] in k}
    assert len(files) == 4   # original, thumbnail, annotated copy, result JSON (the row is the fifth)
    reply = client.delete(f"/api/images/{gone['id']}", headers=alice)
    assert reply.status_code == 204 and reply.data == b""
    assert not {k for k in every_key(settings) if gone["id"] in k}
    assert {k for k in every_key(settings) if keep["id"] in k}, "the other photo keeps its files"
    item = raw_item(settings, gone["id"])
    # A tombstone (it refuses a late worker write) with nothing of the photo left, expiring on its own.
    assert item["status"]["S"] == DELETED and int(item["expires_at"]["N"]) > 0
    assert set(item) == {"id", "status", "expires_at", "doc"}
    doc = json.loads(item["doc"]["S"])
    assert not {"filename", "album", "labels", "metadata", "top_label"} & set(doc)
    assert client.get(f"/api/images/{gone['id']}", headers=alice).status_code == 404
    assert [i["id"] for i in client.get("/api/images", headers=alice).get_json()["images"]] == [keep["id"]]
    assert client.delete(f"/api/images/{gone['id']}", headers=alice).status_code == 204   # a retry
    assert client.delete(f"/api/images/{gone['id']}", headers=as_user("bob")).status_code == 404


def test_the_image_page_delete_button_asks_and_posts_with_the_csrf_token(client, resources, as_user):
    alice = {**HTML, **as_user("alice")}
    image = store_everything(resources, upload(client, alice, album="pets"))
    page = client.get(f"/images/{image['id']}", headers=alice).get_data(as_text=True)
    form = re.search(r'<form id="delete-image" method="post" action="([^"]+)"\s+data-confirm="[^"]+">', page)
    assert form and "confirm.js" in page
    assert client.post(form.group(1), headers=alice).status_code == 400   # no token: refused
    reply = client.post(form.group(1), data={"csrf_token": token_of(client, alice)}, headers=alice)
    assert reply.status_code == 303 and reply.headers["Location"].endswith("/gallery?album=pets")
    assert client.get(f"/api/images/{image['id']}", headers=alice).status_code == 404


def test_deleting_an_album_deletes_its_photos_only(client, resources, settings, as_user):
    alice = as_user("alice")
    trip = [store_everything(resources, upload(client, alice, album="trip")) for _ in range(3)]
    home = store_everything(resources, upload(client, alice, album="home"))
    gallery = client.get("/gallery?album=trip", headers={**HTML, **alice}).get_data(as_text=True)
    assert 'id="delete-album"' in gallery
    alice = with_token(client, alice)
    reply = client.delete("/api/albums/trip", headers=alice)
    assert reply.status_code == 200 and reply.get_json() == {"album": "trip", "deleted": 3}
    assert [i["id"] for i in client.get("/api/images", headers=alice).get_json()["images"]] == [home["id"]]
    assert not any(image["id"] in key for image in trip for key in every_key(settings))
    assert resources.results.albums("alice") == ["home"]
    assert client.delete("/api/albums/trip", headers=alice).get_json()["deleted"] == 0   # a retry


def test_the_course_endpoint_files_images_under_the_caller(client, anonymous_client, resources, as_user):
    QueueFinisher(resources, 1, top="cat").start()
    reply = anonymous_client.post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.3)), "test_00.jpg")})
    assert reply.status_code == 200 and reply.get_data(as_text=True) == "test_00:cat"
    [row] = resources.results.page(owner=ANONYMOUS_OWNER)[0]
    assert row["owner"] == ANONYMOUS_OWNER and row["input_key"].startswith(f"originals/{ANONYMOUS_OWNER}/")
    assert client.get(f"/api/images/{row['id']}", headers=as_user("alice")).status_code == 404


def test_without_a_principal_every_owned_route_answers_401(anonymous_client):
    client = anonymous_client
    for method, path in (("get", "/api/images"), ("get", f"/api/images/{new_image_id()}"), ("get", "/gallery"),
                         ("delete", f"/api/images/{new_image_id()}"), ("delete", "/api/albums/trip")):
        assert getattr(client, method)(path).status_code == 401, path
    assert client.post("/api/images", data=jpeg_bytes(scale=0.3), content_type="image/jpeg").status_code == 401


def test_the_anonymous_principal_of_identity_is_the_contracts_owner():
    assert identity.ANONYMOUS_OWNER == ANONYMOUS_OWNER


# --- failures part-way (in-memory fakes) -------------------------------------------------------------

@pytest.fixture
def memory_app():
    from web_tier import create_app
    resources, faults = memory_resources(Settings(prefix="mem"))
    app = create_app(resources=resources)
    app.config.update(TESTING=True)
    client = app.test_client()
    client.sign = signer(resources)
    return client, resources, faults


def memory_upload(client, owner: str, album: str = "trip") -> dict:
    return upload(client, client.sign(owner), album=album)


def test_a_delete_that_fails_part_way_answers_503_and_a_retry_finishes_it(memory_app):
    client, resources, faults = memory_app
    alice = client.sign("alice")
    image = store_everything(resources, memory_upload(client, "alice"))
    faults.fail("outputs.delete", times=1, when=lambda key: key.startswith("annotated/"))
    reply = client.delete(f"/api/images/{image['id']}", headers=alice)
    assert reply.status_code == 503 and reply.headers["Retry-After"]
    assert "send the DELETE again" in reply.get_json()["error"]["message"]
    assert client.get(f"/api/images/{image['id']}", headers=alice).status_code == 404   # gone for users already
    assert image["annotated_key"] in resources.outputs.objects
    assert client.delete(f"/api/images/{image['id']}", headers=alice).status_code == 204
    assert not [k for k in {**resources.inputs.objects, **resources.outputs.objects} if image["id"] in k]


def test_a_delete_whose_row_write_fails_changes_nothing(memory_app):
    client, resources, faults = memory_app
    alice = client.sign("alice")
    image = store_everything(resources, memory_upload(client, "alice"))
    faults.fail("results.replace_with_tombstone", times=1)
    assert client.delete(f"/api/images/{image['id']}", headers=alice).status_code == 503
    assert client.get(f"/api/images/{image['id']}", headers=alice).get_json()["status"] == "SUCCEEDED"
    assert image["thumbnail_key"] in resources.outputs.objects


def test_an_album_delete_that_fails_part_way_says_how_far_it_got_and_a_retry_finishes(memory_app):
    client, resources, faults = memory_app
    alice = client.sign("alice")
    for _ in range(3):
        store_everything(resources, memory_upload(client, "alice"))
    faults.fail("results.replace_with_tombstone", times=1, when=lambda tombstone_row: faults.calls["results.replace_with_tombstone"] == 2)
    reply = client.delete("/api/albums/trip", headers=alice)
    assert reply.status_code == 503 and reply.get_json()["deleted"] == 1
    assert client.delete("/api/albums/trip", headers=alice).get_json() == {"album": "trip", "deleted": 2}
    assert client.get("/api/images", headers=alice).get_json()["images"] == []


@pytest.mark.parametrize("owner", ["../bob", "a/b", ".hidden", "x" * 129, "a..b"])
def test_an_owner_that_cannot_be_a_key_segment_is_refused_at_the_door_and_by_the_worker(
        client, resources, as_user, owner):
    job = {"v": 1, "id": new_image_id(), "album": "default", "filename": "x.jpg", "content_type": "image/jpeg",
           "submitted_at": utc_now(), "size": 1, "inline_b64": "", "owner": owner}
    with pytest.raises(InvalidJob, match="owner"):
        Job.from_message(json.dumps(job))
    reply = client.post("/api/images", data=jpeg_bytes(scale=0.3), content_type="image/jpeg",
                        headers=as_user(owner))
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "BAD_OWNER"
    assert resources.requests.counts()["visible"] == 0


def test_the_gallery_delete_album_button_posts_with_the_csrf_token(client, resources, as_user):
    alice = {**HTML, **as_user("alice")}
    store_everything(resources, upload(client, alice, album="Old stuff"))
    keep = store_everything(resources, upload(client, alice, album="default"))
    page = client.get("/gallery?album=Old+stuff", headers=alice).get_data(as_text=True)
    action = html.unescape(re.search(r'<form id="delete-album" method="post" action="([^"]+)"', page).group(1))
    assert client.post(action, headers=alice).status_code == 400   # no token: refused
    reply = client.post(action, data={"csrf_token": token_of(client, alice)}, headers=alice)
    assert reply.status_code == 303
    assert [i["id"] for i in client.get("/api/images", headers=alice).get_json()["images"]] == [keep["id"]]
    assert "Old stuff" not in client.get("/", headers=alice).get_data(as_text=True)


def test_get_with_wait_holds_the_owners_request_and_answers_anothers_at_once(client, resources, app, as_user):
    alice, bob = as_user("alice"), as_user("bob")
    image = upload(client, alice)
    waiter = services_of(app).waiter
    reply = client.get(f"/api/images/{image['id']}?wait=30", headers=bob)
    assert reply.status_code == 404 and waiter.batch_reads == 0   # refused before any waiting
    QueueFinisher(resources, 1, top="cat").start()
    reply = client.get(f"/api/images/{image['id']}?wait=30", headers=alice)   # final however soon it ran
    assert reply.status_code == 200 and reply.get_json()["status"] == "SUCCEEDED"


@pytest.mark.slow
def test_what_a_real_worker_stores_for_an_owner_a_delete_removes(client, resources, settings, as_user):
    alice = as_user("alice")
    image = upload(client, alice)
    runner = BatchRunner(resources, shared_pipeline(), "i-test", Heartbeat(resources, "i-test", dict), Counter())
    runner.run(runner.take(resources.requests.receive(10, 1)))
    runner.close()
    result = client.get(f"/api/images/{image['id']}", headers=alice).get_json()
    assert result["status"] == "SUCCEEDED"
    files = {k for k in every_key(settings) if image["id"] in k}
    assert {k.split("/")[0] for k in files} == {"originals", "thumbnails", "annotated", "results"}
    assert all(k.split("/")[1] == "alice" for k in files), files
    assert client.delete(f"/api/images/{image['id']}", headers=alice).status_code == 204
    assert not {k for k in every_key(settings) if image["id"] in k}
    assert raw_item(settings, image["id"])["status"]["S"] == DELETED
