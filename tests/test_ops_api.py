"""The ops JSON endpoints and /metrics against a seeded stack on the moto server: known inputs, known figures."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from web_tier.opsdata import OpsData, Window, iso
from web_tier.services import services_of


@pytest.fixture
def client(admin_client):
    """Operations are for admins: every request of this module acts as one."""
    return admin_client


@pytest.fixture
def seeded(app, resources):
    """A stack with known results, heartbeats, decisions, instances, queue contents and gauges."""
    fleet_ids = resources.fleet.launch(3, "")
    crashed = resources.fleet.launch(1, "")
    resources.fleet.terminate(crashed)
    launched = {i.id: i for i in resources.fleet.instances()}
    now = max(time.time(), *(i.launched_at.timestamp() for i in launched.values()))
    window = Window.ending_at(now, 300)  # 5 s steps
    s = window.start
    _seed_results(resources, s, now)
    _seed_heartbeats(resources, fleet_ids, now)
    _seed_decisions(resources, now)
    _seed_gauges(resources, s)
    for i in range(3):
        resources.requests.send(f'{{"waiting": {i}}}')
    resources.dead_letters.send('{"poison": true}')
    services_of(app).ops = OpsData(resources, clock=lambda: now)
    booting = launched[fleet_ids[2]]
    return {"now": now, "window": window, "ids": fleet_ids, "crashed": crashed[0],
            "booting_s": now - booting.launched_at.timestamp(), "states": [launched[i].state for i in fleet_ids]}


def _result(n: int, completed_at: float, latency_s: float, status: str = "SUCCEEDED") -> dict:
    return {"id": f"{n:032x}", "album": "ops", "filename": f"{n}.jpg", "status": status,
            "submitted_at": iso(completed_at - latency_s), "updated_at": iso(completed_at),
            "completed_at": iso(completed_at), "timings": {"total": 40}, "instance_id": "i-x", "error": None}


def _seed_results(resources, s: float, now: float) -> None:
    results = [_result(1, s + 51, 1.0), _result(2, s + 52, 2.0), _result(3, s + 53, 4.0, "FAILED"),
               _result(4, s + 101, 0.5), _result(5, now - 2000, 1.0)]
    for result in results:
        resources.results.create(result)
    queued = _result(6, now, 0)
    queued.update(status="QUEUED", completed_at=None)
    resources.results.create(queued)


def _worker(instance_id: str, state: str, launched: float, beat: float, done: int, failed: int, **extra) -> dict:
    return {"instance_id": instance_id, "state": state, "launched_at": iso(launched), "last_heartbeat": iso(beat),
            "images_done": done, "images_failed": failed, "model_load_s": 2.5, "current": [], **extra}


def _seed_heartbeats(resources, ids: list[str], now: float) -> None:
    docs = [
        _worker(ids[0], "busy", now - 100, now - 4, 10, 1, current=["msg-1", "<b>msg-2</b>"]),
        _worker(ids[1], "idle", now - 50, now - 1, 0, 0),
        # ids[2] has not reported yet: booting
        _worker("i-retired", "terminated", now - 1000, now - 700, 30, 2),
        _worker("i-vanished", "busy", now - 500, now - 450, 5, 0),
    ]
    for doc in docs:
        resources.fleet_log.put("worker", doc["instance_id"], doc)


def _decision(at: float, desired: int, changed: bool, **extra) -> dict:
    return {"time": at, "at": iso(at), "visible": 12, "in_flight": 3, "dead_letters": 1, "backlog": 15,
            "running": 2, "pending": 1, "target": 10, "time_per_image_s": None, "quiet_for_s": None,
            "desired": desired, "launch": 0, "launched": [], "terminated": [], "errors": [], "changed": changed,
            **extra}


def _seed_decisions(resources, now: float) -> None:
    docs = [_decision(now - 2000, 5, True, launched=["i-old"]),
            _decision(now - 60, 2, True, launch=2, launched=["i-a", "i-b"]),
            _decision(now - 30, 2, False),
            _decision(now - 2, 3, False)]
    for doc in docs:
        resources.fleet_log.put("decision", doc["at"], doc)


def _seed_gauges(resources, s: float) -> None:
    def at(offset):
        return datetime.fromtimestamp(s + offset, timezone.utc)
    resources.metrics.put({"QueueVisible": 7, "RunningInstances": 1, "DesiredInstances": 3}, timestamp=at(16))
    resources.metrics.put({"QueueVisible": 9, "RunningInstances": 2}, timestamp=at(18))
    resources.metrics.put({"DeadLetterVisible": 1, "QueueInFlight": 4}, timestamp=at(31))


def test_timeseries_places_known_results_and_gauges(client, seeded):
    window = seeded["window"]
    reply = client.get("/api/ops/timeseries?window=5m")
    assert reply.status_code == 200
    doc = reply.get_json()
    assert (doc["start"], doc["end"], doc["step_s"]) == (iso(window.start), iso(window.end), 5)
    assert len(doc["timestamps"]) == 60 and doc["timestamps"][10] == iso(window.start + 50)
    series = doc["series"]
    assert all(len(values) == 60 for values in series.values())
    assert series["completed_per_min"][10] == 36.0 and series["failed_per_min"][10] == 12.0
    assert (series["latency_p50_ms"][10], series["latency_p95_ms"][10]) == (2000.0, 3800.0)
    assert series["completed_per_min"][20] == 12.0 and series["latency_p95_ms"][20] == 500.0
    assert sum(series["completed_per_min"]) == 48.0  # 4 images in 5 s steps
    assert series["latency_p50_ms"].count(None) == 58
    assert series["queue_visible"][3] == 9.0 and series["instances_running"][3] == 2.0
    assert series["instances_desired"][3] == 3.0 and series["instances_desired"][4] is None
    assert series["dead_letter"][6] == 1.0 and series["queue_in_flight"][6] == 4.0
    assert series["queue_visible"].count(None) == 59
    assert doc["window_totals"] == {"completed": 4, "failed": 1, "completed_per_min": 0.8, "failed_per_min": 0.2,
                                    "latency_p50_ms": 1500.0, "latency_p95_ms": 3700.0}


def test_timeseries_refuses_a_bad_window(client, seeded):
    reply = client.get("/api/ops/timeseries?window=forever")
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "BAD_WINDOW"


def test_summary_figures_from_the_seeded_stack(client, seeded):
    doc = client.get("/api/ops/summary").get_json()
    states = seeded["states"]
    assert doc["instances"] == {"running": states.count("running"), "pending": states.count("pending"),
                                "pooled": 0, "desired": 3, "max": 19, "min": 0, "decided_at": iso(seeded["now"] - 2)}
    assert doc["queue"] == {"visible": 3, "in_flight": 0, "delayed": 0, "dead_letter": 1}
    instance_seconds = 100 + 50 + seeded["booting_s"] + 300 + 50
    assert doc["totals"]["images_processed"] == 48
    assert (doc["totals"]["images_succeeded"], doc["totals"]["images_failed"]) == (45, 3)
    assert doc["totals"]["instance_seconds"] == pytest.approx(instance_seconds, abs=0.1)
    assert doc["totals"]["instance_seconds_per_image"] == pytest.approx(instance_seconds / 48, abs=0.01)
    assert doc["totals"]["instances_seen"] == 6  # the crashed one counts, its unknown uptime does not
    assert doc["recent"] == {"window_s": 300, "completed": 4, "failed": 1, "completed_per_min": 0.8,
                             "failed_per_min": 0.2, "latency_p50_ms": 1500.0, "latency_p95_ms": 3700.0}


def test_summary_instance_rows(client, seeded):
    workers = {w["instance_id"]: w for w in client.get("/api/ops/summary").get_json()["workers"]}
    ids = seeded["ids"]
    assert set(list(workers)[:3]) == set(ids)  # live ones first
    busy = workers[ids[0]]
    assert (busy["state"], busy["uptime_s"], busy["images_done"], busy["heartbeat_age_s"]) == ("busy", 100.0, 10, 4.0)
    assert busy["current"] == ["msg-1", "<b>msg-2</b>"] and busy["model_load_s"] == 2.5
    assert workers[ids[2]]["state"] == "booting" and workers[ids[2]]["last_heartbeat"] is None
    assert workers["i-retired"]["state"] == "terminated" and workers["i-retired"]["ec2_state"] is None
    assert workers["i-retired"]["uptime_s"] == 300.0
    assert workers["i-vanished"]["state"] == "lost"
    crashed = workers[seeded["crashed"]]
    assert (crashed["state"], crashed["ec2_state"], crashed["live"], crashed["uptime_s"]) == \
        ("never reported", "terminated", False, None)
    assert [w["live"] for w in workers.values()] == [True] * 3 + [False] * 3


def test_summary_lists_the_latest_tick_and_recent_changes(client, seeded):
    decisions = client.get("/api/ops/summary").get_json()["decisions"]
    now = seeded["now"]
    assert [d["at"] for d in decisions] == [iso(now - 2), iso(now - 60)]
    assert decisions[1]["action"] == "launch i-a; launch i-b" and decisions[1]["desired"] == 2
    assert decisions[0]["inputs"]["backlog"] == 15 and decisions[0]["action"] == "none"


def test_metrics_parse_as_prometheus_text(client, seeded):
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.mimetype == "text/plain"
    samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "stack"))): s.value
               for family in text_string_to_metric_families(reply.get_data(as_text=True)) for s in family.samples}
    assert samples[("sightfleet_instances", (("state", "desired"),))] == 3
    assert samples[("sightfleet_queue_messages", (("queue", "requests"), ("state", "visible")))] == 3
    assert samples[("sightfleet_queue_messages", (("queue", "dead_letter"), ("state", "visible")))] == 1
    assert samples[("sightfleet_images_processed", (("outcome", "succeeded"),))] == 45
    assert samples[("sightfleet_recent_latency_milliseconds", (("quantile", "0.95"),))] == 3700
    busy = seeded["ids"][0]
    assert samples[("sightfleet_worker_images_done", (("instance_id", busy),))] == 10
    assert ("sightfleet_worker_images_done", (("instance_id", "i-retired"),)) not in samples  # live workers only


def test_summary_is_cached_briefly(app, client, resources, monkeypatch):
    calls = []
    counts = resources.requests.counts
    monkeypatch.setattr(resources.requests, "counts", lambda: calls.append(1) or counts())
    services_of(app).ops = OpsData(resources, cache_s=1.0)
    for _ in range(5):
        assert client.get("/api/ops/summary").status_code == 200
    client.get("/metrics")
    assert len(calls) == 1
    time.sleep(1.05)
    client.get("/api/ops/summary")
    assert len(calls) == 2


def test_page_and_local_plotly(client):
    page = client.get("/ops")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="chart-queue"' in html and "ops.js" in html and "cdn" not in html.lower()
    plotly_url = re.search(r'<script src="(/ops/plotly-[^"]+\.min\.js)"', html).group(1)
    js = client.get(plotly_url)
    assert js.status_code == 200 and js.mimetype == "text/javascript"
    assert "max-age=31536000" in js.headers["Cache-Control"]
    assert b"plotly.js v" in js.data[:400] and len(js.data) > 1_000_000
    assert client.get("/ops/plotly-0.0.1.min.js").status_code == 404
    assert '<option value="15m" selected>' in client.get("/ops?window=<script>").get_data(as_text=True)
    assert '<option value="2h" selected>' in client.get("/ops?window=2h").get_data(as_text=True)


def test_ops_js_inserts_text_only():
    from tests.support import REPO
    source = (REPO / "web_tier" / "static" / "ops.js").read_text()
    assert "innerHTML" not in source.replace("never innerHTML", "") and "insertAdjacentHTML" not in source
