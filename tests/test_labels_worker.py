"""The worker's side of the label index and reprocessing, on the real local endpoint with the real models:
entries written once under redelivery, written later when the index was out of reach, replaced on reprocess;
a reprocessed photo ends with one result and one set of entries; runs resume; the admin route is admins' only.
"""
from __future__ import annotations

from app_tier import jobs
from app_tier import reprocess as reprocess_cli
from app_tier.pipeline import ImageInput, PipelineSettings
from sightfleet import labelindex
from sightfleet.config import Settings
from sightfleet.contracts import SUCCEEDED
from sightfleet.errors import Unavailable
from sightfleet.labelindex import entries_for
from sightfleet.reprocessing import Progress, load_progress, needs_reprocess, run_page
from tests.pipeline_fixtures import shared_pipeline
from tests.support import jpeg_bytes, keyed_client
from tests.test_labels_api import process, upload


def keys(resources, image_id: str) -> set[str]:
    return {e.key for e in resources.labels.entries(image_id)}


def counts(resources, owner: str) -> dict:
    return {c["key"]: c["count"] for c in resources.labels.counts(owner)}


def test_a_redelivered_job_writes_and_counts_its_entries_once(client, resources):
    image = upload(client)
    [message] = resources.requests.receive(10, 1)
    resources.requests.send(message.body)          # the same job twice, as a redelivery brings it
    resources.requests.set_visibility([message.receipt], 0)
    process(resources)
    process(resources)
    row = resources.results.get(image["id"])
    assert row["status"] == SUCCEEDED and {"cat", "animal"} <= keys(resources, image["id"])
    assert keys(resources, image["id"]) == {e.key for e in entries_for(row, resources.settings.min_confidence)}
    assert counts(resources, row["owner"])["cat"] == 1 and counts(resources, row["owner"])["animal"] == 1
    assert resources.requests.counts()["visible"] == 0


def test_an_index_out_of_reach_hands_the_job_back_and_its_redelivery_indexes_it(client, resources, monkeypatch):
    monkeypatch.setattr(jobs, "RETRY_DELAY_S", 0)
    image = upload(client)
    real = labelindex.sync
    monkeypatch.setattr(labelindex, "sync", lambda *a: (_ for _ in ()).throw(Unavailable("labels table away")))
    process(resources)
    assert resources.results.get(image["id"])["status"] == SUCCEEDED and keys(resources, image["id"]) == set()
    monkeypatch.setattr(labelindex, "sync", real)
    process(resources)
    assert "cat" in keys(resources, image["id"]) and resources.requests.counts()["visible"] == 0


def test_the_worker_stores_weaker_labels_down_to_the_floor_beside_what_it_shows_as_before():
    def run(floor: float):
        settings = PipelineSettings.from_settings(Settings(label_floor=floor))
        [outcome] = shared_pipeline().with_settings(settings).process([ImageInput(id="a" * 32, data=jpeg_bytes())])
        return outcome
    stored, before = run(1.0), run(100.0)   # a floor of 100: no weaker labels, as before the floor
    assert before.weaker_labels == [] and stored.weaker_labels
    assert min(label["Confidence"] for label in stored.weaker_labels) >= 1.0
    assert not {label["Name"] for label in stored.weaker_labels} & {label["Name"] for label in stored.labels}
    assert stored.labels == before.labels and stored.top_label == before.top_label
    assert stored.annotated == before.annotated


def test_reprocessing_replaces_the_entries_and_twice_leaves_one_result_and_one_set(client, resources):
    image = upload(client)
    process(resources)
    row = resources.results.get(image["id"])
    stale = {**row, "labels": [*row["labels"], {"Name": "Car", "Confidence": 80.0, "Instances": [], "Parents": []}]}
    labelindex.sync(resources.labels, stale)        # an entry an older model left behind
    assert "vehicle" in keys(resources, image["id"])
    for _ in range(2):
        progress = run_page(resources, Progress.for_selection(row["owner"], None, None))
        assert (progress.seen, progress.requeued, progress.done) == (1, 1, True)
        again = run_page(resources, Progress.for_selection(row["owner"], None, None))
        assert again.requeued == 0                   # still QUEUED: not requeued a second time
        process(resources)
    final = resources.results.get(image["id"])
    assert final["status"] == SUCCEEDED and final["updated_at"] > row["updated_at"]
    assert keys(resources, image["id"]) == {e.key for e in entries_for(final, resources.settings.min_confidence)} and "vehicle" not in keys(
        resources, image["id"])
    assert counts(resources, row["owner"])["cat"] == 1 and "vehicle" not in counts(resources, row["owner"])
    assert resources.requests.counts()["visible"] == 0


def test_a_run_resumes_from_its_recorded_cursor_and_selects_by_version(client, resources, settings, capsys,
                                                                        monkeypatch):
    ids = [upload(client)["id"] for _ in range(3)]
    process(resources)
    owner = resources.results.get(ids[0])["owner"]
    first = run_page(resources, Progress.for_selection(owner, "pets", "2"), page_size=2)
    assert (first.seen, first.requeued, first.done) == (2, 2, False)
    resumed = load_progress(resources.fleet_log, Progress.for_selection(owner, "pets", "2"))
    assert resumed.seen == 2 and resumed.cursor == first.cursor
    monkeypatch.setenv("AWS_ENDPOINT_URL", settings.endpoint_url)
    monkeypatch.setenv("SIGHTFLEET_PREFIX", settings.prefix)
    assert reprocess_cli.main(["--owner", owner, "--album", "pets", "--older-than-version", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith("3 photos seen, 3 requeued, 0 skipped")
    assert resources.requests.counts()["visible"] == 3


def test_version_selection():
    current = "ssd+efficientnet_lite3+vocabulary-2.b"
    assert needs_reprocess({"status": SUCCEEDED}, current) and needs_reprocess({"status": SUCCEEDED}, None)
    assert not needs_reprocess({"status": SUCCEEDED, "label_model_version": current}, current)
    assert needs_reprocess({"status": SUCCEEDED, "label_model_version": "ssd+efficientnet_lite0+vocabulary-1.a"},
                           current)
    assert not needs_reprocess({"status": "FAILED"}, None)


def test_the_admin_route_requeues_a_page_and_shows_progress_to_admins_only(app, client, resources):
    image = upload(client)
    process(resources)
    owner = resources.results.get(image["id"])["owner"]
    assert client.post(f"/api/admin/reprocess?owner={owner}").status_code == 403
    admin = keyed_client(app, resources, "root", admin=True)
    for query, code in (("owner=a/b", "BAD_OWNER"), ("limit=0", "BAD_LIMIT"), ("cursor=xyz", "BAD_CURSOR"),
                        ("older_than_version=" + "9" * 65, "BAD_VERSION")):
        reply = admin.post(f"/api/admin/reprocess?{query}")
        assert reply.status_code == 400 and reply.get_json()["error"]["code"] == code, query
    done = admin.post(f"/api/admin/reprocess?owner={owner}&limit=10").get_json()
    assert (done["seen"], done["requeued"], done["done"], done["next_cursor"]) == (1, 1, True, None)
    runs = admin.get("/api/admin/reprocess").get_json()["runs"]
    assert runs[0]["run"] == done["run"] and runs[0]["requeued"] == 1
    assert client.get("/api/admin/reprocess").status_code == 403


def test_deleting_an_owners_images_forgets_their_labels_and_counts(client, resources):
    from sightfleet.deletion import delete_owner_images
    image = upload(client)
    process(resources)
    owner = resources.results.get(image["id"])["owner"]
    assert counts(resources, owner)["cat"] == 1
    assert delete_owner_images(resources, owner) == []
    assert keys(resources, image["id"]) == set() and resources.labels.counts(owner) == []
    assert resources.labels.forget_owner(owner) == 0    # the emptied counts went with the account's images
