"""Operator actions against the local AWS endpoint (moto): retry, redrive, purge, pause, fleet settings, audit,
the /api/ops routes that carry them (admins only, JSON errors) and what each worker is doing."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from sightfleet import operations
from sightfleet.config import Settings
from sightfleet.contracts import Job, Result, iso, new_image_id
from sightfleet.control import Control, ControlState
from sightfleet.errors import Invalid, Unavailable
from sightfleet.memory import memory_resources
from tests.support import AWS_TEST_ENV, REPO
from web_tier.alerts import Alerts, find_alerts
from web_tier.workers_view import flag_outliers
from web_tier.services import services_of


def failed_photo(resources, code: str = "STORAGE_UNAVAILABLE", album: str = "ops", stored: bool = True,
                 submitted_at: str | None = None) -> dict:
    """A FAILED row (with its original in the input bucket when stored)."""
    job = Job(id=new_image_id(), album=album, filename="cat.jpg", content_type="image/jpeg",
              submitted_at=submitted_at or iso(time.time()), size=3, owner="owner-1")
    row = Result.queued(job).failed(code, "storage was out of reach").to_dict()
    resources.results.create(row)
    if stored:
        resources.inputs.put(row["input_key"], b"jpg", "image/jpeg")
    return row


def queued_job(resources, with_row: bool = True) -> Job:
    job = Job(id=new_image_id(), album="ops", filename="dog.jpg", content_type="image/jpeg",
              submitted_at=iso(time.time()), size=3, owner="owner-1", inline_b64="anBn")
    if with_row:
        resources.results.create(Result.queued(job).to_dict())
    return job


def drain(queue) -> list[str]:
    bodies = []
    while batch := queue.receive(10, 0):
        bodies += [m.body for m in batch]
        queue.delete_batch([m.receipt for m in batch])
    return bodies


def test_retry_requeues_each_failed_photo_once_and_skips_those_without_an_original(resources):
    kept, lost = failed_photo(resources), failed_photo(resources, stored=False)
    report = operations.retry(resources, operations.RetryFilter(), "alice")
    assert (report.done, report.skipped, report.ids) == (1, {"original not stored": 1}, [kept["id"]])
    again = operations.retry(resources, operations.RetryFilter(), "alice")
    assert again.done == 0   # QUEUED now: a second retry sends nothing
    bodies = drain(resources.requests)
    assert [Job.from_message(b).id for b in bodies] == [kept["id"]]
    job = Job.from_message(bodies[0])
    assert (job.key, job.bucket, job.owner) == (kept["input_key"], resources.inputs.name, "owner-1")
    assert resources.results.get(kept["id"])["status"] == "QUEUED"
    assert resources.results.get(lost["id"])["status"] == "FAILED"
    audit = Control(resources.fleet_log).recent_audit()
    assert [(a["who"], a["action"], a["count"]) for a in audit] == [("alice", "retry", 0), ("alice", "retry", 1)]


def test_retry_filters_by_code_album_and_time(resources):
    old = failed_photo(resources, submitted_at="2026-01-01T00:00:00Z")
    other_code = failed_photo(resources, code="CORRUPT_IMAGE")
    other_album = failed_photo(resources, album="elsewhere")
    wanted = failed_photo(resources)
    flt = operations.RetryFilter(code="STORAGE_UNAVAILABLE", album="ops", since="2026-06-01T00:00:00Z")
    assert operations.retry(resources, flt, "alice").ids == [wanted["id"]]
    assert {resources.results.get(r["id"])["status"] for r in (old, other_code, other_album)} == {"FAILED"}


def test_a_retry_that_cannot_be_sent_puts_the_failed_result_back():
    resources, faults = memory_resources(Settings())
    row = failed_photo(resources)
    faults.fail("requests.send", Unavailable)
    report = operations.retry(resources, operations.RetryFilter(), "alice")
    assert (report.done, report.skipped) == (0, {"could not be sent": 1})
    assert resources.results.get(row["id"])["status"] == "FAILED"


def test_purge_marks_every_photo_it_held_failed_and_empties_the_queue(resources):
    queued, rowless = queued_job(resources), queued_job(resources, with_row=False)
    for body in (queued.to_message(), rowless.to_message(), '{"junk": 1}'):
        resources.requests.send(body)
    report = operations.purge(resources, "requests", "bob")
    assert report.done == 3 and report.skipped == {"not a job": 1}
    for job in (queued, rowless):
        row = resources.results.get(job.id)
        assert (row["status"], row["error"]["code"]) == ("FAILED", operations.PURGED)
    assert resources.requests.counts()["visible"] == 0 and report.left["visible"] == 0


def test_redrive_moves_dead_letters_back_and_reopens_the_jobs_the_sweep_failed(resources):
    job = queued_job(resources)
    row = resources.results.get(job.id)
    resources.results.finish(Result.from_dict(row).failed("PROCESSING_FAILED", "3 tries").to_dict())
    resources.dead_letters.send(job.to_message())
    resources.dead_letters.send('{"poison": true}')
    started = time.monotonic()
    report = operations.redrive(resources, "carol", rate_per_s=4)
    assert time.monotonic() - started >= 0.4   # 2 messages at 4 a second
    assert report.done == 2 and report.left["visible"] == 0
    assert sorted(drain(resources.requests)) == sorted([job.to_message(), '{"poison": true}'])
    assert resources.results.get(job.id)["status"] == "QUEUED"
    assert Control(resources.fleet_log).read().release_dead_letters_at is not None


def test_pause_and_fleet_settings_are_stored_and_bounded_by_the_deployed_limits(resources):
    settings = resources.settings.with_changes(max_instances=5)
    control = Control(resources.fleet_log)
    control.set_paused(True, "dave")
    control.set_fleet(settings, {"max_instances": 2, "idle_grace_s": 7.5}, "dave")
    fresh = Control(resources.fleet_log).read()   # another process, or one restarted, reads the same
    assert (fresh.paused, fresh.paused_by, fresh.max_instances) == (True, "dave", 2)
    assert (fresh.apply(settings).max_instances, fresh.apply(settings).idle_grace_s) == (2, 7.5)
    for changes in ({"max_instances": 6}, {"min_instances": 3}, {"warm_pool_size": -1}, {"idle_grace_s": 0},
                    {"max_instances": True}, {"colour": 1}):
        with pytest.raises(Invalid):
            control.set_fleet(settings, changes, "dave")
    control.set_fleet(settings, {"max_instances": None}, "dave")
    assert control.read().apply(settings).max_instances == 5


def test_an_unreadable_control_state_keeps_the_last_one_read():
    resources, faults = memory_resources(Settings())
    control = Control(resources.fleet_log, cache_s=0)
    control.set_paused(True, "erin")
    faults.fail("fleet_log.get_many", Unavailable)
    assert control.current().paused is True
    assert Control(resources.fleet_log, cache_s=0).current() == ControlState()


# ---- the routes -------------------------------------------------------------------------------------

ACTIONS = [("post", "/api/ops/retry", {}), ("post", "/api/ops/redrive", {}), ("post", "/api/ops/pause", None),
           ("post", "/api/ops/resume", None), ("post", "/api/ops/purge", {"queue": "dead_letters"}),
           ("patch", "/api/ops/fleet", {"max_instances": 3}), ("get", "/api/ops/workers", None)]


@pytest.mark.parametrize("method,path,body", ACTIONS)
def test_actions_are_for_admins_only(client, anonymous_client, method, path, body):
    assert getattr(client, method)(path, json=body).status_code == 403
    assert getattr(anonymous_client, method)(path, json=body).status_code == 401


@pytest.mark.parametrize("method,path,body,needle", [
    ("post", "/api/ops/retry", {"since": "yesterday"}, "ISO 8601"),
    ("post", "/api/ops/retry", {"limit": 0}, "limit"),
    ("post", "/api/ops/retry", {"owner": "<b>"}, "owner"),
    ("post", "/api/ops/retry", [1], "JSON object"),
    ("post", "/api/ops/redrive", {"rate_per_s": 1000}, "rate_per_s"),
    ("post", "/api/ops/purge", {}, "queue must be"),
    ("post", "/api/ops/purge", {"queue": "responses"}, "queue must be"),
    ("post", "/api/ops/pause", {"now": True}, "unknown field"),
    ("patch", "/api/ops/fleet", {}, "send one or more"),
    ("patch", "/api/ops/fleet", {"max_instances": 10_000}, "deployed maximum"),
    ("patch", "/api/ops/fleet", {"max_instances": "3"}, "must be int"),
])
def test_bad_bodies_get_a_clear_400(admin_client, method, path, body, needle):
    reply = getattr(admin_client, method)(path, json=body)
    assert reply.status_code == 400 and needle in reply.get_json()["error"]["message"], reply.get_json()


def test_the_routes_act_audit_and_show_on_the_summary(admin_client, resources):
    row = failed_photo(resources)
    assert admin_client.post("/api/ops/retry", json={"code": "STORAGE_UNAVAILABLE"}).get_json()["ids"] == [row["id"]]
    paused = admin_client.post("/api/ops/pause").get_json()
    assert paused["paused"] and paused["paused_by"] == "admin"
    fleet = admin_client.patch("/api/ops/fleet", json={"max_instances": 3, "warm_pool_size": 1}).get_json()
    assert fleet["effective"]["max_instances"] == 3 and fleet["deployed"]["max_instances"] == 19
    summary = admin_client.get("/api/ops/summary").get_json()
    assert summary["control"]["paused"] and summary["instances"]["max"] == 3
    assert [a["action"] for a in summary["audit"]] == ["fleet settings", "pause", "retry"]
    assert "paused" in {a["name"] for a in summary["alerts"]}
    assert 'sightfleet_alert{name="paused",stack=' in admin_client.get("/metrics").get_data(as_text=True)
    page = admin_client.get("/ops", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert 'id="paused-banner"' in page and "Processing is paused by admin" in page
    assert admin_client.post("/api/ops/resume").get_json()["paused"] is False


def test_an_upload_while_paused_is_accepted_and_the_answer_says_so(admin_client, resources):
    admin_client.post("/api/ops/pause")
    from tests.support import jpeg_bytes
    reply = admin_client.post("/api/images?wait=30", data={"file": (__import__("io").BytesIO(jpeg_bytes(scale=0.2)),
                                                                     "cat.jpg", "image/jpeg")})
    doc = reply.get_json()
    assert reply.status_code == 202 and doc["processing"] == "paused" and "paused" in doc["notice"]
    assert doc["images"][0]["status"] == "QUEUED" and resources.requests.counts()["visible"] == 1


def test_workers_view_shows_what_each_worker_holds_with_the_outlier_flagged(admin_client, resources):
    ids = resources.fleet.launch(3, "")
    now = time.time()
    holds = {ids[0]: [5, 6], ids[1]: [4], ids[2]: [400]}
    for instance_id, ages in holds.items():
        resources.fleet_log.put("worker", instance_id, {
            "instance_id": instance_id, "state": "busy", "last_heartbeat": iso(now), "stage": "processing",
            "holding": [{"id": f"photo-{a}", "since": iso(now - a), "stage": "processing"} for a in ages],
            "model_versions": {"openvino": "x"}, "cpu_percent": 97.5, "rss_mb": 410.2})
    doc = admin_client.get("/api/ops/workers").get_json()
    first = doc["workers"][0]
    assert first["instance_id"] == ids[2] and first["outlier"] and first["holding"][0]["held_s"] >= 400
    assert not any(w["outlier"] for w in doc["workers"][1:])
    assert first["model_versions"] == {"openvino": "x"} and first["rss_mb"] == 410.2


@pytest.mark.parametrize("holds,outliers", [
    ([[5], [6], [7]], []), ([[5], [6], [300]], [2]), ([[1], [2], [9]], []),   # under the 10 s floor
    ([[], [], [50]], [])])                                                      # a lone holder has no peers
def test_outlier_rule(holds, outliers):
    entries = [{"holding": [{"held_s": s} for s in h], "longest_held_s": max(h, default=0.0)} for h in holds]
    assert [i for i, e in enumerate(flag_outliers(entries)) if e["outlier"]] == outliers


def test_alerts_log_once_as_they_start(caplog):
    summary = {"queue": {"dead_letter": 2}, "instances": {"max": 2, "running": 2, "pending": 0},
               "workers": [{"live": True, "instance_id": "i-1", "state": "busy", "heartbeat_age_s": 500}]}
    clock = [1000.0]
    alerts = Alerts(clock=lambda: clock[0])
    settings = Settings()
    assert {a["name"] for a in alerts.check(summary, settings)} == {"dead_letters", "worker_stalled"}
    clock[0] += 400
    assert {a["name"] for a in alerts.check(summary, settings)} == {"dead_letters", "worker_stalled", "fleet_at_cap"}
    lines = [r.getMessage() for r in caplog.records if r.name == "web_tier.alerts"]
    assert len(lines) == 3 and sum("dead_letters" in line for line in lines) == 1
    assert find_alerts({**summary, "queue": {"dead_letter": 0}, "workers": []}, 120, None) == []


def test_audit_documents_are_json_and_expire(resources):
    Control(resources.fleet_log).audit("frank", "purge requests", 4, {"left": {"visible": 0}})
    doc = Control(resources.fleet_log).recent_audit(1)[0]
    assert json.loads(json.dumps(doc)) == doc and doc["count"] == 4


def cli(settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, **AWS_TEST_ENV, "AWS_ENDPOINT_URL": settings.endpoint_url,
           "SIGHTFLEET_PREFIX": settings.prefix, "SIGHTFLEET_MAX_INSTANCES": "6"}
    return subprocess.run([sys.executable, "-m", "controller", "ops", *args], env=env, cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_acts_audits_and_shows_progress(settings, resources):
    rows = [failed_photo(resources) for _ in range(3)]
    done = cli(settings, "--as", "grace", "retry", "--code", "STORAGE_UNAVAILABLE")
    assert done.returncode == 0 and sorted(json.loads(done.stdout)["ids"]) == sorted(r["id"] for r in rows)
    assert "retry: 100%" in done.stderr or "retry: 3" in done.stderr   # tqdm's bar
    assert json.loads(cli(settings, "pause").stdout)["paused"] is True
    fleet = cli(settings, "fleet", "--max-instances", "2", "--idle-grace-s", "5")
    assert json.loads(fleet.stdout)["max_instances"] == 2
    refused = cli(settings, "fleet", "--max-instances", "7")
    assert refused.returncode == 2 and "deployed maximum, 6" in refused.stderr
    kept = cli(settings, "purge", "requests", stdin="n\n")
    assert kept.returncode == 1 and resources.requests.counts()["visible"] == 3
    assert json.loads(cli(settings, "purge", "requests", "--yes").stdout)["done"] == 3
    status = json.loads(cli(settings, "status").stdout)
    assert (status["paused"], status["max_instances"], status["idle_grace_s"]) == (True, 2, 5.0)
    audit = Control(resources.fleet_log).recent_audit()
    assert [a["action"] for a in audit] == ["purge requests", "fleet settings", "pause", "retry"]
    assert audit[-1]["who"] == "grace" and audit[0]["who"].startswith("cli:")


def test_failing_health_checks_and_open_limits_raise_alerts():
    summary = {"queue": {"dead_letter": 0}, "instances": {"max": 2, "running": 0, "pending": 0}, "workers": []}
    found = find_alerts(summary, 120, None, ["results table: Unavailable: timed out"], limits_fail_open=True)
    assert [a["name"] for a in found] == ["unhealthy", "limits_fail_open"]
    assert "results table" in found[0]["message"]


def test_the_summary_alerts_when_a_resource_fails_its_health_check(admin_client, app):
    services_of(app).health.also_check("broken thing", lambda: 1 / 0)
    alerts = admin_client.get("/api/ops/summary").get_json()["alerts"]
    assert any(a["name"] == "unhealthy" and "broken thing" in a["message"] for a in alerts)
    metrics = admin_client.get("/metrics").get_data(as_text=True)
    assert re.search(r'sightfleet_alert\{name="unhealthy",stack="[^"]+"\} 1\.0', metrics)
    assert re.search(r'sightfleet_alert\{name="fleet_at_cap",stack="[^"]+"\} 0\.0', metrics)


def test_a_batch_received_as_processing_pauses_is_handed_back_at_once(resources):
    from app_tier.oversight import Oversight
    oversight = Oversight(resources)
    resources.requests.send(queued_job(resources).to_message())
    received = resources.requests.receive(10, 0)
    assert oversight.unless_paused(resources.requests, received) == received   # running: kept
    resources.requests.set_visibility([m.receipt for m in received], 0)
    Control(resources.fleet_log).set_paused(True, "ivan")   # another process pauses: read afresh, not cached
    again = resources.requests.receive(10, 0)
    assert oversight.unless_paused(resources.requests, again) == []
    assert len(resources.requests.receive(10, 0)) == 1   # visible again at once
    figures = oversight.figures()
    assert figures["holding"] == [] and figures["rss_mb"] > 10 and "cpu_percent" in figures


def test_the_controller_sees_a_dead_holder_until_its_messages_reappear(resources):
    from controller.observe import Observer
    ids = resources.fleet.launch(2, "")
    resources.fleet.terminate([ids[0]])
    now = time.time()
    resources.fleet_log.put("worker", ids[0], {"instance_id": ids[0], "state": "busy", "last_heartbeat": iso(now - 5),
                                               "current": ["m1", "m2", "m3"]})
    resources.fleet_log.put("worker", ids[1], {"instance_id": ids[1], "state": "busy", "last_heartbeat": iso(now),
                                               "current": ["m4"]})
    obs = Observer(resources, resources.settings).observe(now, paused=True).observation()
    holding = {m.id: (m.state, m.holding) for m in obs.members}
    assert holding[ids[0]] == ("terminated", 3) and holding[ids[1]][1] == 1
    assert obs.holders_known and obs.paused
