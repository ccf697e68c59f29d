"""Pages for people through the Flask test client: upload, gallery, image page, escaping, CSRF."""
from __future__ import annotations

import html
import io
import re
import time
import uuid

import boto3
import pytest
from markupsafe import escape

from sightfleet.contracts import Job
from tests.support import jpeg_bytes
from tests.test_web_helpers import finish
from web_tier import display

HTML = {"Accept": "text/html"}


def token_of(client) -> str:
    page = client.get("/", headers=HTML)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def upload(client, name: str, album: str = "pets", data: bytes | None = None) -> dict:
    """Through the JSON API as the upload page does it (cookie + CSRF header)."""
    reply = client.post(f"/api/images?album={album}", headers={"X-CSRF-Token": token_of(client)},
                        data={"file": (io.BytesIO(data or jpeg_bytes(scale=0.3)), name)})
    assert reply.status_code == 202, reply.data
    return reply.get_json()["images"][0]


def cards(page_html: str) -> list[str]:
    return re.findall(r'<li class="photo" data-id="([0-9a-f]{32})"', page_html)


def test_upload_page_has_picker_albums_token_and_a_strict_policy(client, resources):
    upload(client, "cat.jpg", album="Holiday 2026")
    reply = client.get("/", headers=HTML)
    text = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert re.search(r'<input id="files" type="file" name="file" accept="[^"]*" multiple>', text)
    assert '<option value="Holiday 2026"' in text and '<option value="default" selected>' in text
    assert 'data-api-url="/api/images"' in text and "upload.js" in text
    csp = reply.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "object-src 'none'" in csp
    assert resources.settings.endpoint_url in csp  # presigned image URLs point at the storage endpoint


def test_form_fallback_needs_the_token_then_redirects_to_the_album(client, resources):
    form = {"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg"), "album": "default", "new_album": "Trip"}
    refused = client.post("/upload", data=dict(form), headers=HTML)
    assert refused.status_code == 400 and "reload the page" in refused.get_data(as_text=True)
    assert resources.requests.counts()["visible"] == 0
    form = {"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg"), "album": "default", "new_album": "Trip",
            "csrf_token": token_of(client)}
    reply = client.post("/upload", data=form, headers=HTML)
    assert reply.status_code == 303 and reply.headers["Location"] == "/gallery?album=Trip"
    [message] = resources.requests.receive(10, 1)
    assert Job.from_message(message.body).album == "Trip"


def test_form_fallback_shows_each_refusal_next_to_its_file(client):
    form = {"csrf_token": token_of(client), "album": "default",
            "file": [(io.BytesIO(jpeg_bytes(scale=0.3)), "good.jpg"), (io.BytesIO(b"GIF89a" + b"\0" * 64), "anim.gif")]}
    reply = client.post("/upload", data=form, headers=HTML)
    text = reply.get_data(as_text=True)
    assert reply.status_code == 200
    row = re.search(r'<li class="upload-row failed">(.*?)</li>', text, re.S).group(1)
    assert "anim.gif" in row and "GIF images are not supported" in row
    assert re.search(r'<li class="upload-row done">.*?good\.jpg.*?queued.*?href="/images/[0-9a-f]{32}"', text, re.S)


def test_gallery_pages_of_twenty_with_badges_labels_and_live_url(client, resources):
    ids = [upload(client, f"p{i:02d}.jpg", album="big")["id"] for i in range(23)]
    finish(resources, ids[-1], top="cat", data=jpeg_bytes(scale=0.5))
    finish(resources, ids[-2], status="FAILED")
    first = client.get("/gallery?album=big", headers=HTML).get_data(as_text=True)
    assert cards(first) == ids[::-1][:20]
    assert 'data-live="/api/images?limit=20&amp;album=big"' in first
    newest = first.split('<li class="photo"')[1]
    assert '<span class="badge succeeded">' in newest and '>cat <small>91%</small></a>' in newest
    assert re.search(r'<img src="http://127\.0\.0\.1:\d+/[^"]+thumbnails/[^/"]+/' + ids[-1], newest)
    assert "the image data is damaged" in first.split('<li class="photo"')[2]
    older = re.search(r'id="older" href="([^"]+)"', first).group(1)
    second = client.get(html.unescape(older), headers=HTML).get_data(as_text=True)
    assert cards(second) == ids[::-1][20:] and 'id="older"' not in second and "← Newest" in second


def test_gallery_of_all_albums_and_status_filter(client, resources):
    a = upload(client, "a.jpg", album="one")["id"]
    b = upload(client, "b.jpg", album="two")["id"]
    finish(resources, a)
    assert set(cards(client.get("/gallery", headers=HTML).get_data(as_text=True))) == {a, b}
    assert cards(client.get("/gallery?status=SUCCEEDED", headers=HTML).get_data(as_text=True)) == [a]
    empty = client.get("/gallery?album=none", headers=HTML).get_data(as_text=True)
    assert cards(empty) == [] and "No photos here yet" in empty


def test_image_page_shows_result_metadata_timings_and_instance(client, resources):
    image = upload(client, "chelsea.jpg", data=jpeg_bytes())
    queued_page = client.get(image["page_url"], headers=HTML).get_data(as_text=True)
    assert "Waiting for a worker" in queued_page and "data-live-until-final" in queued_page
    finish(resources, image["id"], top="cat", data=jpeg_bytes())
    text = client.get(image["page_url"], headers=HTML).get_data(as_text=True)
    assert re.search(r'<img id="annotated" src="http://127\.0\.0\.1:\d+/[^"]*annotated/[^/"]+/' + image["id"], text)
    assert '<span class="badge succeeded">succeeded</span>' in text and '<a class="top-label" href="/gallery?label=cat">cat</a>' in text
    assert '<meter min="0" max="100" value="91.25"></meter> 91.2%' in text
    for row in ("<th>Taken</th><td>30 May 2008, 15:56:01</td>", "<th>Camera</th><td>Canon EOS 40D</td>", "<th>Dimensions</th><td>451 × 300 px</td>",
                "<th>File size</th><td>24.2 KB</td>", "<th>Format</th><td>JPEG</td>",
                "<th>Orientation</th><td>1 (upright)</td>",
                "<th>GPS</th><td>43.467150° N, 11.885213° W (43° 28′ 1.74″ N, 11° 53′ 6.77″ W)</td>"):
        assert row in text, row
    assert "<th>detect</th>" in text and "41.3 ms" in text and "66.2 ms" in text
    assert "<code>i-0123456789abcdef0</code>" in text
    assert "<a" not in text.split("<th>GPS</th>")[1].split("</tr>")[0]  # coordinates, never a map link


def test_failed_image_page_shows_the_reason(client, resources):
    image = upload(client, "broken.jpg")
    finish(resources, image["id"], status="FAILED")
    text = client.get(image["page_url"], headers=HTML).get_data(as_text=True)
    assert 'id="failure" role="alert"' in text and "the image data is damaged" in text and "CORRUPT_IMAGE" in text


def test_unknown_pages_are_html_for_browsers_and_json_for_programs(client):
    page = client.get("/images/" + "0" * 32, headers=HTML)
    assert page.status_code == 404 and page.mimetype == "text/html" and "no such image" in page.get_data(as_text=True)
    assert client.get("/images/nope", headers=HTML).status_code == 404
    assert client.get("/images/" + "0" * 32).get_json()["error"]["code"] == "NOT_FOUND"
    bad = client.get("/gallery?cursor=xyz", headers=HTML)
    assert bad.status_code == 400 and bad.mimetype == "text/html"


# --- hostile file names: escaped wherever shown, never part of a storage key ------------------------

HOSTILE = [
    "<script>alert(1)</script>.jpg",
    "<img src=x onerror=alert(1)>.jpg",
    '"><svg onload=alert(1)>.jpg',
    "../../etc/passwd.jpg",
    "..\\..\\windows\\win.ini.jpg",
    "фото \u202egpj.exe 📷 ü.jpg",
    "x" * 400 + ".jpg",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_escaped_in_pages_and_never_reach_keys(client, resources, settings, name):
    # A raw body with ?filename= carries any name intact (a multipart header cannot hold a bare quote).
    reply = client.post("/api/images", query_string={"album": "hostile", "filename": name},
                        data=jpeg_bytes("astronaut", scale=4.0, quality=98), content_type="image/jpeg",
                        headers={"X-CSRF-Token": token_of(client)})
    image = reply.get_json()["images"][0]
    shown = image["filename"]
    assert "/" not in shown and "\\" not in shown and "\u202e" not in shown and len(shown) <= 200
    assert shown.endswith(".jpg")
    finish(resources, image["id"], top="person", data=jpeg_bytes(scale=0.3))
    pages = [client.get(url, headers=HTML).get_data(as_text=True)
             for url in ("/gallery?album=hostile", image["page_url"], "/gallery")]
    for text in pages:
        assert str(escape(shown)) in text  # Jinja's autoescaping, as shown on screen
        for raw in ("<script>alert", "<img src=x", "<svg onload", '"><svg'):
            assert raw not in text
    [message] = resources.requests.receive(10, 1)
    job = Job.from_message(message.body)
    # A pointer job: the original was stored under its owner and id.
    assert job.key == f"originals/{image['owner']}/{image['id']}.jpg"
    s3 = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    keys = [o["Key"] for b in (settings.names.input_bucket, settings.names.output_bucket)
            for o in s3.list_objects_v2(Bucket=b).get("Contents", [])]
    assert keys and all(re.fullmatch(r"(originals|thumbnails|annotated)/" + re.escape(image["owner"]) +
                                     r"/[0-9a-f]{32}\.(jpg|png)", k) for k in keys), keys


def test_hostile_cse546_name_is_answered_as_given_text(client, resources):
    from tests.test_web_helpers import QueueFinisher
    QueueFinisher(resources, 1, top="cat").start()
    reply = client.post("/", data={"myfile": (io.BytesIO(jpeg_bytes(scale=0.3)), "<b>x<b>.jpg")})
    assert reply.status_code == 200 and reply.mimetype == "text/plain"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"  # so no browser takes the text for HTML
    assert reply.get_data(as_text=True) == "<b>x<b>:cat"


# --- display helpers -------------------------------------------------------------------------------

def test_metadata_rows_leave_out_what_the_photo_did_not_say():
    assert display.metadata_rows({}) == []
    assert display.metadata_rows(None) == []
    rows = dict(display.metadata_rows({"camera_make": "NIKON", "camera_model": "E950", "width": 10, "height": 20,
                                       "file_size": 123456, "gps": {"latitude_decimal": -33.8568,
                                                                    "longitude_decimal": 151.2153, "altitude_m": 58.4}}))
    assert rows == {"Camera": "NIKON E950", "Dimensions": "10 × 20 px", "File size": "123,456 bytes",
                    "GPS": "33.856800° S, 151.215300° E, 58 m above sea level"}


def test_timings_and_times_read_well():
    rows = display.timing_rows({"decode": 2.0, "detect": 40.0, "total": 42.0, "note": "x"})
    assert rows == [("decode", 2.0, 0.05), ("detect", 40.0, 1.0)]
    assert display.when("2026-11-22T00:59:30.123Z") == "22 Nov 2026, 00:59:30 UTC"
    assert display.when("not a time") == "not a time" and display.when(None) == ""
    assert display.taken("2008:05:30 15:56:01") == display.taken("2008-05-30T15:56:01") == "30 May 2008, 15:56:01"
    assert display.taken("sometime") == "sometime" and display.taken(None) == ""
    assert display.taken("2008-10-22T16:28:39+02:00") == "22 Oct 2008, 16:28:39 (UTC+02:00)"
    assert display.orientation(6) == "6 (turned 90° clockwise)" and display.orientation(None) == ""


def test_album_list_shows_new_albums_at_once_and_survives_an_unreachable_table(resources, settings):
    from web_tier.albums import Albums
    albums = Albums(resources.results, ttl_s=0)
    assert albums.names("alice") == ["default"]
    albums.note({"album": "Zoo", "owner": "alice"})
    assert albums.names("alice") == ["default", "Zoo"]
    assert albums.names("bob") == ["default"]   # albums are per owner
    boto3.client("dynamodb", endpoint_url=settings.endpoint_url, region_name=settings.region).delete_table(
        TableName=settings.names.results_table)
    assert albums.names("alice") == ["default", "Zoo"]  # the last known list, not an error page


def test_an_album_emptied_image_by_image_leaves_the_list(client, resources):
    """Deleting an album's last photo one by one (API or page) drops the album from the chooser at once."""
    album = f"Brief-{uuid.uuid4().hex[:6]}"
    ids = []
    for name in ("a.jpg", "b.jpg"):
        posted = client.post("/api/images", data={"album": album, "file": (io.BytesIO(jpeg_bytes()), name)})
        assert posted.status_code == 202, posted.get_data(as_text=True)
        ids.append(posted.get_json()["images"][0]["id"])
    assert album in client.get("/").get_data(as_text=True)
    assert client.delete(f"/api/images/{ids[0]}").status_code == 204
    assert album in client.get("/").get_data(as_text=True)   # one photo is left
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"/images/{ids[1]}").get_data(as_text=True))
    deleted = client.post(f"/images/{ids[1]}/delete", data={"csrf_token": csrf.group(1)} if csrf else {})
    assert deleted.status_code == 303
    assert album not in client.get("/").get_data(as_text=True)

    other = f"Other-{uuid.uuid4().hex[:6]}"   # the same through the API alone
    posted = client.post("/api/images", data={"album": other, "file": (io.BytesIO(jpeg_bytes()), "c.jpg")})
    assert other in client.get("/").get_data(as_text=True)
    assert client.delete(f"/api/images/{posted.get_json()['images'][0]['id']}").status_code == 204
    assert other not in client.get("/").get_data(as_text=True)


def test_noted_albums_are_offered_until_reads_take_over():
    from web_tier.albums import Albums

    class NoAlbumsYet:   # an index that has not caught up, then never will (the album was emptied)
        def albums(self, owner):
            return []

    albums = Albums(NoAlbumsYet(), ttl_s=0, noted_s=0.2)
    albums.note({"album": "Zoo", "owner": "alice"})
    assert albums.names("alice") == ["default", "Zoo"]
    time.sleep(0.25)
    assert albums.names("alice") == ["default"]
