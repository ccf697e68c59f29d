"""How long the local AWS endpoint takes to save and bring back 1,000 images, and why not moto's recorder.

Runs the emulator as scripts/run does, fills one stack as 1,000 recognised images would (per
image: the original in the input bucket, thumbnail, annotated copy and result JSON in the output
bucket, a result row, a response message, and its job message received and deleted) plus a
backlog of queued jobs with inline photos, then:

- snapshot (devstack/local_state.py): the first save, a save with nothing new (each with how
  long it held requests back while it copied moto's state), and after a SIGKILL the restart:
  time to answer, to provision, to restore (requests are held for all of it); and whether what
  came back is what was there;
- moto's recorder (MOTO_ENABLE_RECORDING): the same load recorded, then replayed into a fresh
  endpoint: its size, its replay time, and what the replay got wrong.

    .venv/bin/python benchmarks/persistence.py [--images 1000] [--backlog 100]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.stack import answers, moto_command  # noqa: E402
from sightfleet.config import Settings  # noqa: E402
from sightfleet.resources import Resources, provision  # noqa: E402
from devstack.endpoint_guard import READY_PATH  # noqa: E402
from testkit.access import control_headers, use_test_access  # noqa: E402
from testkit.photos import jpeg_bytes  # noqa: E402
from testkit.procs import free_port, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class Emulator:
    def __init__(self, argv_extra: list[str], env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = moto_command(self.port) + argv_extra
        self._env = {**os.environ, **(env or {})}
        self.proc = None

    def start(self) -> float:
        started = time.perf_counter()
        self.proc = subprocess.Popen(self._argv, cwd=REPO, env=self._env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: answers(self.url + READY_PATH), 60, 0.05, what="the endpoint")
        return time.perf_counter() - started

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def post(self, path: str) -> dict | str:
        reply = requests.post(self.url + path, headers=control_headers(), timeout=600)
        reply.raise_for_status()
        return reply.json() if reply.headers.get("Content-Type", "").startswith("application/json") else reply.text


def fill(resources: Resources, images: int, backlog: int) -> dict:
    """The contents of a stack after `images` recognised images, with `backlog` jobs still queued."""
    original, thumbnail = jpeg_bytes(scale=0.6), jpeg_bytes(scale=0.25)
    for number in range(images):
        image_id = f"img{number:05d}"
        unique = image_id.encode()  # after the JPEG's end: every image's bytes differ, as photos do
        resources.inputs.put(f"originals/{image_id}.jpg", original + unique, "image/jpeg")
        resources.outputs.put(f"thumbnails/{image_id}.jpg", thumbnail + unique, "image/jpeg")
        resources.outputs.put(f"annotated/{image_id}.jpg", original + unique + b"a", "image/jpeg")
        result = {"id": image_id, "status": "SUCCEEDED", "labels": [{"Name": "Cat", "Confidence": 91.0}] * 5}
        resources.outputs.put(f"results/{image_id}.json", json.dumps(result).encode(), "application/json")
        resources.fleet_log.put("bench", image_id, result)  # a row per image, as the results table holds
        resources.responses.send(json.dumps({"id": image_id, "status": "SUCCEEDED"}))
        resources.requests.send(json.dumps({"id": image_id, "bucket": "in", "key": f"originals/{image_id}.jpg"}))
        for message in resources.requests.receive(10, 0):
            resources.requests.delete(message.receipt)  # a worker finished it
    inline = base64.b64encode(thumbnail).decode()
    for number in range(backlog):
        resources.requests.send(json.dumps({"id": f"queued{number}", "inline": inline + "A" * (number % 4 * 4)}))
    return fingerprint(resources)


def fingerprint(resources: Resources) -> dict:
    """What a restart must bring back, in figures."""
    return {"request queue": resources.requests.counts()["visible"] + resources.requests.counts()["in_flight"],
            "response queue": resources.responses.counts()["visible"],
            "rows": len(resources.fleet_log.all("bench", limit=100000)),
            "thumbnail bytes": len(resources.outputs.get("thumbnails/img00000.jpg"))}


def snapshot_figures(images: int, backlog: int, folder: Path) -> None:
    emulator = Emulator(["--state-dir", str(folder / "state"), "--save-interval", "3600"])
    emulator.start()
    settings = Settings(endpoint_url=emulator.url, prefix="bench-persist")
    provision(settings)
    emulator.post("/_sightfleet/state/restore")
    resources = Resources.connect(settings)
    started = time.perf_counter()
    before = fill(resources, images, backlog)
    print(f"filled {images} images and {backlog} queued jobs in {time.perf_counter() - started:.1f} s: {before}")
    first = emulator.post("/_sightfleet/state/save")
    second = emulator.post("/_sightfleet/state/save")
    on_disk = sum(f.stat().st_size for f in (folder / "state").rglob("*") if f.is_file())
    print(f"snapshot: first save {first['seconds']:.2f} s ({first['objects']} objects, {first['items']} items, "
          f"{first['messages']} messages, {on_disk / 2**20:.0f} MiB on disk; requests held for "
          f"{first['requests_held_s'] * 1000:.0f} ms); a save with nothing new {second['seconds']:.2f} s "
          f"(the cost of each periodic save; requests held for {second['requests_held_s'] * 1000:.0f} ms)")
    emulator.kill()
    answer_s = emulator.start()
    started = time.perf_counter()
    provision(settings)
    provision_s = time.perf_counter() - started
    restored = emulator.post("/_sightfleet/state/restore")
    after = fingerprint(resources)
    print(f"snapshot: after SIGKILL, answering in {answer_s:.2f} s, provisioned in {provision_s:.2f} s, "
          f"restored in {restored['seconds']:.2f} s; same contents: {after == before} {after}")
    emulator.kill()


def recorder_figures(images: int, backlog: int, folder: Path) -> None:
    recording = folder / "moto_recording"
    env = {"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(recording)}
    emulator = Emulator([], env)
    emulator.start()
    settings = Settings(endpoint_url=emulator.url, prefix="bench-record")
    provision(settings)
    resources = Resources.connect(settings)
    before = fill(resources, images, backlog)
    emulator.kill()
    size = recording.stat().st_size
    replaying = Emulator([], env)  # the same recording file, replayed into a fresh endpoint
    replaying.port, replaying.url = emulator.port, emulator.url
    replaying._argv = emulator._argv
    replaying.start()
    started = time.perf_counter()
    replaying.post("/moto-api/recorder/replay-recording/")
    replay_s = time.perf_counter() - started
    after = fingerprint(resources)
    print(f"recorder: {size / 2**20:.0f} MiB recorded, replayed in {replay_s:.1f} s; same contents: "
          f"{after == before} {after} (the deletes replayed old receipt handles)")
    replaying.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=100)
    args = parser.parse_args()
    use_test_access()   # a key pair and control token of this run's, for the endpoints it starts and itself
    with tempfile.TemporaryDirectory() as folder:
        snapshot_figures(args.images, args.backlog, Path(folder))
        recorder_figures(args.images, args.backlog, Path(folder))


if __name__ == "__main__":
    main()
