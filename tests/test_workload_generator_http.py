"""The generator against a real HTTP server that behaves like the service's contract.

The target here is a small Flask app served by werkzeug in a thread: a test double of
the web tier, good for what the generator itself must get right (threads, retries,
Retry-After, timeouts, refused and dropped connections, polling, fleet sampling).
"""
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
from flask import Flask, jsonify, request
from PIL import Image
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.support import REPO, TESTDATA, free_port
from workload_generator import API, LoadConfig, builtin_images, folder_images, run_workload
from workload_generator.cli import main
from workload_generator.client import Client
from workload_generator.fleet import FleetSampler

PHOTOS = TESTDATA / "exif-samples" / "jpg"
LABELS = {"chelsea": "cat", "coffee": "cup", "astronaut": "person", "stereo_motorcycle": "motorcycle",
          "Canon_40D": "person", "Nikon_D70": "bird"}


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


class Target:
    """A contract-shaped target: labels by file name, optional slowness, overload and failures."""

    def __init__(self, *, delay_s=0.0, process_s=0.0, busy=0, busy_status=503, retry_after="1",
                 reject=(), fail=(), summary=True):
        self.delay_s, self.process_s, self.busy, self.busy_status = delay_s, process_s, busy, busy_status
        self.retry_after, self.reject, self.fail, self.summary = retry_after, set(reject), set(fail), summary
        self.lock = threading.Lock()
        self.hits, self.jobs, self.authorizations = Counter(), {}, Counter()
        self.summary_status = 200
        self.active = self.max_active = 0
        self.server = make_server("127.0.0.1", 0, self._app(), threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def _app(self) -> Flask:
        app = Flask(__name__)
        app.before_request(self._track)
        app.teardown_request(self._untrack)
        app.add_url_rule("/", "sync", self._sync, methods=["POST"])
        app.add_url_rule("/api/images", "submit", self._submit, methods=["POST"])
        app.add_url_rule("/api/images/<image_id>", "result", self._result)
        app.add_url_rule("/api/ops/summary", "summary", self._summary)
        return app

    def _track(self):
        with self.lock:
            self.hits[request.method + " " + request.path] += 1
            self.authorizations[request.headers.get("Authorization")] += 1
            uploading = request.method == "POST"  # the fleet sampler's GETs are not load
            self.active += uploading
            self.max_active = max(self.max_active, self.active)
            overloaded = uploading and self.busy > 0
            self.busy -= overloaded
        if overloaded:
            response = jsonify(error={"code": "overloaded", "message": "try later"})
            response.status_code, response.headers["Retry-After"] = self.busy_status, self.retry_after
            return response
        return None

    def _untrack(self, _exc):
        with self.lock:
            self.active -= request.method == "POST"

    def _sync(self):
        stem = request.files["myfile"].filename.rsplit(".", 1)[0]
        if stem in self.reject:
            return jsonify(error={"code": "unsupported_format", "message": "not JPEG or PNG"}), 415
        time.sleep(self.delay_s)
        return f"{stem}:{LABELS.get(stem, 'unknown')}", 200, {"Content-Type": "text/plain"}

    def _doc(self, job):
        final = time.monotonic() >= job["done_at"]
        failed = final and job["stem"] in self.fail
        return {"id": job["id"], "album": "default", "filename": job["filename"],
                "status": ("FAILED" if failed else "SUCCEEDED") if final else "PROCESSING",
                "labels": [] if failed or not final else [{"Name": LABELS.get(job["stem"], "unknown"),
                                                           "Confidence": 90.0}],
                "top_label": LABELS.get(job["stem"]) if final and not failed else None,
                "error": {"code": "corrupt_image", "message": "cannot decode"} if failed else None,
                "timings": {"total_ms": 40.0} if final else {}, "instance_id": "i-double"}

    def _submit(self):
        jobs = []
        for upload in request.files.getlist("file"):
            job = {"id": uuid.uuid4().hex, "filename": upload.filename, "stem": upload.filename.rsplit(".", 1)[0],
                   "done_at": time.monotonic() + self.process_s}
            self.jobs[job["id"]] = job
            jobs.append(job)
        wait = min(float(request.args.get("wait", 0)), 60)
        if wait and self.process_s <= wait:
            time.sleep(self.process_s)
            return jsonify(images=[self._doc(j) for j in jobs]), 200
        return jsonify(images=[{"id": j["id"], "status": "QUEUED", "status_url": f"/api/images/{j['id']}",
                                "filename": j["filename"]} for j in jobs]), 202

    def _result(self, image_id):
        job = self.jobs.get(image_id)
        if job is None:
            return jsonify(error={"code": "not_found", "message": "no such image"}), 404
        return jsonify(self._doc(job))

    def _summary(self):
        if not self.summary:
            return jsonify(error={"code": "not_found", "message": "no ops"}), 404
        if self.summary_status != 200:  # a Sightfleet asked without an admin's key
            return jsonify(error={"code": "forbidden", "message": "only admins"}), self.summary_status
        waiting = sum(1 for j in self.jobs.values() if time.monotonic() < j["done_at"])
        return jsonify(instances={"running": 2, "pending": 1, "desired": 3},
                       queue={"visible": waiting, "in_flight": 0, "dead_letter": 0})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target_factory():
    targets = []

    def start(**behaviour) -> Target:
        targets.append(Target(**behaviour))
        return targets[-1]

    yield start
    for target in targets:
        target.close()


def config(url, **overrides) -> LoadConfig:
    settings = dict(url=url, concurrency=3, progress=False, backoff_s=0.01, poll_interval_s=0.02,
                    fleet_interval_s=0.1, timeout_s=10.0)
    settings.update(overrides)
    return LoadConfig(**settings)


def test_sessions_are_per_thread():
    client = Client(config("http://127.0.0.1:1/"), threading.Event())
    seen = {}

    def grab(index):
        seen[index] = (client.session(), client.session())

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(first is second for first, second in seen.values())
    assert len({id(first) for first, _ in seen.values()}) == 3
    client.close()


def test_sync_mode_keeps_concurrency_requests_in_flight(target_factory):
    target = target_factory(delay_s=0.2)
    record = run_workload(config(target.url, num_requests=9), builtin_images())
    summary = record.summary({"chelsea": "cat", "coffee": "cup", "astronaut": "dog"})
    assert (summary.sent, summary.succeeded, summary.failed) == (9, 9, 0)
    assert [r.name for r in record.results][:5] == ["chelsea", "coffee", "astronaut", "stereo_motorcycle", "rocket"]
    assert (summary.judgement.correct, summary.judgement.wrong, summary.judgement.unchecked) == (4, 2, 3)
    assert target.hits["POST /"] == 9 and target.max_active == 3
    assert 0.55 < record.duration_s < 2.5  # 3 waves of 0.2 s, not 9 in a row
    assert summary.latency_s["min"] >= 0.2


def test_api_mode_with_server_side_wait(target_factory):
    target = target_factory(process_s=0.1)
    record = run_workload(config(target.url, mode=API, num_requests=5, album="trip"), builtin_images())
    summary = record.summary({"chelsea": "cat", "coffee": "cup"})
    assert summary.succeeded == 5 and summary.judgement.correct == 2
    assert summary.service_ms["p50"] == 40.0
    assert all(r.image_id and r.instance_id == "i-double" for r in record.results)
    assert target.hits["GET /api/images/" + record.results[0].image_id] == 0  # the wait answered at once


def test_api_mode_polls_until_final_and_reports_failed_results(target_factory):
    target = target_factory(process_s=0.3, fail={"rocket"})
    record = run_workload(config(target.url, mode=API, wait_s=0), builtin_images())
    summary = record.summary()
    assert (summary.succeeded, summary.failed, summary.failures) == (4, 1, {"failed:corrupt_image": 1})
    polls = sum(n for key, n in target.hits.items() if key.startswith("GET /api/images/"))
    assert polls >= 5 * 2  # every image was polled, and more than once
    assert all(r.latency_s >= 0.3 for r in record.results)


@pytest.mark.parametrize("status", [503, 429])
def test_overload_is_retried_after_the_servers_retry_after(target_factory, status):
    target = target_factory(busy=1, busy_status=status, retry_after="1")
    record = run_workload(config(target.url, num_requests=1), builtin_images())
    only = record.results[0]
    assert only.ok and only.attempts == 2 and only.latency_s >= 1.0
    assert target.hits["POST /"] == 2


def test_overload_that_lasts_fails_after_bounded_retries(target_factory):
    target = target_factory(busy=100, retry_after="0")
    record = run_workload(config(target.url, num_requests=2, retries=2), builtin_images())
    assert record.summary().failures == {"http_503:overloaded": 2}
    assert all(r.attempts == 3 for r in record.results) and target.hits["POST /"] == 6


def test_client_errors_are_not_retried(target_factory):
    target = target_factory(reject={"coffee"})
    record = run_workload(config(target.url, num_requests=5), builtin_images())
    assert record.summary().failures == {"http_415:unsupported_format": 1}
    assert target.hits["POST /"] == 5


def test_timeout_is_final_and_bounded(target_factory):
    target = target_factory(delay_s=3.0)
    record = run_workload(config(target.url, num_requests=2, timeout_s=0.5), builtin_images())
    assert record.summary().failures == {"timeout": 2}
    assert all(r.attempts == 1 and r.latency_s < 1.5 for r in record.results)
    assert record.duration_s < 2.0


def test_refused_connections_are_retried_then_reported():
    record = run_workload(config(f"http://127.0.0.1:{free_port()}/", num_requests=3, retries=2), builtin_images())
    assert record.summary().failures == {"connection_error": 3}
    assert all(r.attempts == 3 for r in record.results)


def test_dropped_connections_are_retried_then_reported():
    accepted = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)

        def drop_all():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                accepted.append(conn.recv(1024).split(b" ", 1)[0])
                conn.close()  # read the request, answer nothing

        threading.Thread(target=drop_all, daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        record = run_workload(config(url, num_requests=2, retries=1), builtin_images())
    assert record.summary().failures == {"connection_error": 2}
    assert accepted.count(b"POST") == 4  # two images, each tried twice


def test_fleet_is_sampled_when_the_target_has_a_summary(target_factory):
    target = target_factory(delay_s=0.5)
    record = run_workload(config(target.url, num_requests=3), builtin_images())
    assert len(record.fleet) >= 3
    assert record.summary().fleet["peak_desired"] == 3


def test_fleet_sampling_stops_on_a_target_without_summary(target_factory):
    target = target_factory(summary=False)
    sampler = FleetSampler(target.url, interval_s=0.05).start()
    time.sleep(0.4)
    assert sampler.stop() == [] and sampler.absent
    assert target.hits["GET /api/ops/summary"] == 1


@pytest.mark.slow
def test_cli_with_folder_ground_truth_json_and_plot(target_factory, tmp_path):
    target = target_factory(delay_s=0.05)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("Canon_40D.jpg", "Nikon_D70.jpg"):
        (folder / name).write_bytes((PHOTOS / name).read_bytes())
    truth = tmp_path / "truth.csv"
    truth.write_text("Canon_40D,person\nNikon_D70,cat\n")
    out_json, out_png = tmp_path / "run.json", tmp_path / "run.png"
    status = main(["--url", target.url, "--image_folder", str(folder), "--num_request", "6", "--concurrency", "2",
                   "--ground-truth", str(truth), "--json", str(out_json), "--plot", str(out_png), "--no-progress"])
    assert status == 0  # wrong labels are reported, not failures
    doc = json.loads(out_json.read_text())
    assert doc["summary"]["succeeded"] == 6 and doc["summary"]["judgement"]["correct"] == 3
    assert len(doc["requests"]) == 6 and doc["config"]["concurrency"] == 2
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out_png) as figure:
        assert figure.size[0] >= 1000 and figure.size[1] >= 300
    assert len(folder_images(folder)) == 2


@pytest.mark.slow
def test_cli_ctrl_c_prints_the_partial_report_and_exits_130(target_factory):
    target = target_factory(delay_s=1.0)
    command = [sys.executable, "-m", "workload_generator", "--url", target.url, "--num-request", "40",
               "--concurrency", "2", "--no-progress"]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while target.hits["POST /"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=15)
    assert child.returncode == 130, stderr
    assert "unfinished (interrupted)" in stdout and "requests planned" in stdout and "40" in stdout


def test_an_api_key_goes_with_every_request_and_into_no_file(target_factory, tmp_path, monkeypatch):
    target = target_factory(process_s=0.05)
    out_json = tmp_path / "run.json"
    status = main(["--url", target.url, "--mode", "api", "--num-request", "3", "--api-key", "sfk_secret-key",
                   "--wait", "0", "--json", str(out_json), "--no-progress"])
    assert status == 0
    assert set(target.authorizations) == {"Bearer sfk_secret-key"}  # uploads, polls and the fleet summary
    assert target.hits["GET /api/ops/summary"] >= 1
    assert "sfk_secret-key" not in out_json.read_text()
    monkeypatch.setenv("SIGHTFLEET_API_KEY", "sfk_from-env")
    assert main(["--url", target.url, "--num-request", "1", "--no-progress"]) == 0
    assert target.authorizations["Bearer sfk_from-env"] >= 1


def test_without_a_key_no_credentials_are_sent(target_factory, monkeypatch):
    monkeypatch.delenv("SIGHTFLEET_API_KEY", raising=False)
    target = target_factory()
    assert main(["--url", target.url, "--num-request", "2", "--no-progress"]) == 0
    assert set(target.authorizations) == {None}


def test_fleet_sampling_stops_when_the_summary_needs_an_admin(target_factory):
    target = target_factory()
    target.summary_status = 403
    sampler = FleetSampler(target.url, interval_s=0.05).start()
    time.sleep(0.4)
    assert sampler.stop() == [] and sampler.absent
