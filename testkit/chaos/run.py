"""One chaos run against a running stack: the load, the faults and the sampler, each in its own thread."""
from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import requests

from sightfleet.aws.sqs import Queue
from sightfleet.config import Settings
from sightfleet.contracts import FINAL_STATUSES
from sightfleet.errors import SightfleetError
from sightfleet.resources import Resources
from testkit.chaos.pids import resume, serving_pids, supervised_pid, web_worker_pids, worker_pids_by_instance
from testkit.chaos.plan import ALBUM, PROCESSED_POISON, ChaosConfig, Photo, plan_faults, plan_uploads, poison_bodies
from testkit.chaos.report import ChaosReport, ClientUpload, Fault
from testkit.procs import descendants
from testkit.stack import LocalStack

log = logging.getLogger(__name__)
SAMPLE_S = 1.0
MID_BATCH_WAIT_S = 25.0     # how long kill_worker looks for a worker holding a batch
MAX_UPLOAD_ATTEMPTS = 6
RETRY_PAUSE_MAX_S = 5.0     # the most a client waits between attempts (Retry-After is capped here)


class ChaosRun:
    """Load, faults and sampling against one running stack, then the checks."""

    def __init__(self, config: ChaosConfig, stack: LocalStack, photos: list[Photo],
                 on_progress: Callable[[int, int], None] | None = None):
        self.config = config
        self.stack = stack
        self.rng = random.Random(config.seed)   # drawn from here in this order only, so a seed replays a run
        self.resources = Resources.connect(Settings(endpoint_url=stack.aws_url, prefix=stack.prefix))
        self.report = ChaosReport(config)
        self.uploads: list[ClientUpload] = []
        self.faults = [Fault(at, kind) for at, kind in plan_faults(config, self.rng)]
        self.upload_plan = plan_uploads(config, self.rng, photos)   # the fault thread draws only after this
        self.photos = photos
        self.clients = ThreadPoolExecutor(config.upload_clients, thread_name_prefix="client")
        self.in_flight = 0   # uploads waiting for their answer right now
        self.final_docs: dict[str, dict] = {}
        self.last_rows: dict[str, dict] = {}   # each accepted row as last sampled
        self.poison_ids: dict[str, str] = {}   # valid image id -> which poison body carried it
        self.killed: set[int] = set()
        self.resumed = threading.Event()    # cleared while the endpoint is stopped
        self.resumed.set()
        self.stop = threading.Event()       # the run is over: every wait ends
        self.sampled_enough = threading.Event()
        self._lock = threading.Lock()
        self._on_progress = on_progress or (lambda final, accepted: None)
        self._started = 0.0

    # -- helpers --
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def stack_alive(self) -> bool:
        return self.stack.proc.poll() is None

    def _sleep_until(self, at_s: float) -> None:
        while not self.stop.is_set() and self.elapsed() < at_s:
            self.stop.wait(min(0.2, at_s - self.elapsed()))

    def accepted_ids(self) -> list[str]:
        with self._lock:
            return [u.image_id for u in self.uploads if u.image_id]

    # -- load --
    def upload(self, item: ClientUpload) -> None:
        """Upload one photo until a 202 or a 4xx, retrying a 503 or no answer a bounded number of times."""
        files = {"file": (f"chaos-{item.number}-{item.photo.name}", item.photo.data, item.photo.content_type)}
        for _ in range(MAX_UPLOAD_ATTEMPTS):
            if not self.stack_alive() or self.stop.is_set():
                return
            self.resumed.wait(self.config.stall_s[1] + 5)   # a client retries after the stall, not into it
            pause = 1.0
            try:
                reply = self._post(files)
            except requests.RequestException as exc:
                item.answers[f"no answer ({type(exc).__name__})"] += 1
            else:
                item.answers[str(reply.status_code)] += 1
                if reply.status_code == 202:
                    with self._lock:
                        item.image_id = reply.json()["images"][0]["id"]
                    return
                if 400 <= reply.status_code < 500:
                    item.refused = f"{reply.status_code} {reply.text[:200]}"
                    return
                pause = float(reply.headers.get("Retry-After", 1) or 1)
            self.stop.wait(min(pause, RETRY_PAUSE_MAX_S))

    def _post(self, files: dict) -> requests.Response:
        with self._lock:
            self.in_flight += 1
        try:
            return self.stack.post("/api/images", files=files, params={"album": ALBUM},
                                   timeout=(5, self.config.upload_timeout_s))
        finally:
            with self._lock:
                self.in_flight -= 1

    def submit(self, photo: Photo) -> None:
        """Hand one upload to the clients."""
        with self._lock:
            item = ClientUpload(len(self.uploads), photo)
            self.uploads.append(item)
        self.clients.submit(self.upload, item)

    def run_load(self) -> None:
        """Every planned upload at its moment, several clients at once."""
        for at_s, photo in self.upload_plan:
            self._sleep_until(at_s)
            self.submit(photo)

    def give_faults_work(self, uploads_only: bool = False) -> None:
        """A burst more when nothing is being uploaded (or, unless uploads_only, processed): work for a fault."""
        pending = not uploads_only and any(i not in self.final_docs for i in self.accepted_ids())
        if not pending and not self.in_flight:
            self.report.extra_uploads += self.config.burst
            for n in range(self.config.burst):
                self.submit(self.photos[n % len(self.photos)])

    # -- sampling --
    def sample(self) -> int:
        """Read every accepted row once; remember each first final document and flag any later change."""
        ids = self.accepted_ids()
        try:
            rows = self.resources.results.get_many(ids)
        except SightfleetError as exc:
            log.info("sample skipped: %s", exc)
            return len(self.final_docs)
        for row in rows:
            self.last_rows[row["id"]] = row
            first = self.final_docs.get(row["id"])
            if first is None and row["status"] in FINAL_STATUSES:
                self.final_docs[row["id"]] = row
            elif first is not None and row != first and row["id"] not in self.report.rewritten:
                self.report.problem(f"image {row['id']} rewritten after it was final: {first['status']} "
                                    f"-> {row['status']} ({differences(first, row)})")
                self.report.rewritten.append(row["id"])
        self.stack.track()
        self._on_progress(len(self.final_docs), len(ids))
        return len(self.final_docs)

    def run_sampler(self) -> None:
        while not self.sampled_enough.wait(SAMPLE_S):
            if self.resumed.is_set() and self.stack_alive():
                self.sample()

    # -- faults --
    def run_faults(self) -> None:
        for fault in self.faults:
            self._sleep_until(fault.at_s)
            if self.stop.is_set() or not self.stack_alive():
                fault.detail = "not injected: the stack had already exited"
                continue
            fault.at_s = round(self.elapsed(), 1)
            getattr(self, f"_{fault.kind}")(fault)
            if not fault.done and not self.stack_alive():
                fault.detail = "not injected: the stack exited meanwhile"
            log.info("chaos fault at %.1f s: %s %s", fault.at_s, fault.kind, fault.detail)

    def _kill(self, fault: Fault, pids: list[int], what: str) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.add(pid)
            fault.pids.append(pid)
        fault.done = bool(fault.pids)
        fault.detail = f"SIGKILL {what} pid {fault.pids}" if fault.done else f"no {what} to kill"

    def held_batches(self) -> Counter:
        """PROCESSING rows by instance id, once some worker holds any (empty after MID_BATCH_WAIT_S)."""
        self.give_faults_work()
        deadline = time.monotonic() + MID_BATCH_WAIT_S
        while time.monotonic() < deadline and self.stack_alive() and not self.stop.is_set():
            pending = [i for i in self.accepted_ids() if i not in self.final_docs]
            try:
                held = Counter(r["instance_id"] for r in self.resources.results.get_many(pending)
                               if r["status"] == "PROCESSING")
            except SightfleetError:
                held = Counter()
            if held:
                return held
            time.sleep(0.1)
        return Counter()

    def _kill_worker(self, fault: Fault) -> None:
        """SIGKILL the worker of an instance that holds PROCESSING rows right now (a batch mid-way)."""
        held = self.held_batches()
        pids = worker_pids_by_instance(self.stack)
        for instance_id, count in held.most_common():
            if instance_id in pids:
                self._kill(fault, [pids[instance_id]], f"worker of {instance_id} holding {count} jobs,")
                return
        self._kill(fault, sorted(pids.values())[:1], f"worker (none held a batch within {MID_BATCH_WAIT_S:.0f} s),")

    def _kill_controller(self, fault: Fault) -> None:
        self._kill(fault, supervised_pid(self.stack, "controller"), "controller")

    def _kill_web_worker(self, fault: Fault) -> None:
        """SIGKILL a gunicorn worker, the one serving an upload if one does within MID_BATCH_WAIT_S."""
        self.give_faults_work(uploads_only=True)
        port, deadline = int(self.stack.web_url.rsplit(":", 1)[1]), time.monotonic() + MID_BATCH_WAIT_S
        while time.monotonic() < deadline and self.stack_alive() and not self.stop.is_set():
            serving = serving_pids(port, web_worker_pids(self.stack))
            if serving:
                self._kill(fault, serving[:1], "gunicorn worker serving a request,")
                return
            time.sleep(0.02)
        workers = web_worker_pids(self.stack)
        self._kill(fault, workers[:1], f"gunicorn worker (none served a request within {MID_BATCH_WAIT_S:.0f} s),")

    def _stall_endpoint(self, fault: Fault) -> None:
        """SIGSTOP the endpoint's processes while workers hold a batch, then SIGCONT them, whatever happens."""
        held = sum(self.held_batches().values())
        pids = [pid for top in supervised_pid(self.stack, "devstack.emulator")
                for pid in (top, *sorted(descendants(top)))]
        seconds = self.rng.uniform(*self.config.stall_s)
        if not pids:
            fault.detail = "no endpoint process found"
            return
        self.resumed.clear()
        try:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            self.stop.wait(seconds)
        finally:
            resume(pids)
            self.resumed.set()
        fault.pids, fault.done = pids, True
        fault.detail = f"SIGSTOP endpoint pids {pids} for {seconds:.1f} s with {held} jobs PROCESSING, then SIGCONT"

    def _poison(self, fault: Fault) -> None:
        queue = Queue(self.resources.settings, self.resources.settings.names.request_queue)
        sent = []
        for name, body in poison_bodies():
            try:
                queue.send(body)
            except SightfleetError as exc:
                log.warning("poison %r not sent: %s", name, exc)
                continue
            sent.append(name)
            self.poison_ids.update(dict.fromkeys(_job_id(body), name))
        self.report.poison_sent += len(sent)
        self.report.poison_dead += sum(1 for name in sent if name not in PROCESSED_POISON)
        fault.done = bool(sent)
        fault.detail = f"sent {len(sent)} poison bodies: {', '.join(sent)}"

    # -- after the load --
    def drain(self) -> None:
        """Until every accepted image and every poison image id is final and the request queue is empty, within the bound."""
        deadline = time.monotonic() + self.config.drain_timeout_s
        while time.monotonic() < deadline and self.stack_alive():
            if self.sample() == len(self.accepted_ids()) and self._queue_empty() and self._poison_final():
                self.report.drain_s = round(self.elapsed(), 1)
                return
            time.sleep(SAMPLE_S)

    def _poison_final(self) -> bool:
        """Whether each poison body that names an image has its row final: a dead-lettered one is marked FAILED by
        the controller's next look at the dead-letter queue, a moment after the request queue is empty."""
        try:
            rows = self.resources.results.get_many(list(self.poison_ids))
        except SightfleetError:
            return False
        return all(row["status"] in FINAL_STATUSES for row in rows)

    def _queue_empty(self) -> bool:
        try:
            return not any(self.resources.requests.counts().values())
        except SightfleetError:
            return False


def _job_id(body: str) -> list[str]:
    """The valid image id a poison body carries, if it carries one."""
    try:
        value = json.loads(body).get("id")
    except (ValueError, AttributeError, RecursionError):
        return []
    return [value] if isinstance(value, str) else []


def differences(before: dict, after: dict) -> str:
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return "changed: " + ", ".join(changed)
