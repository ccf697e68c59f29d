"""Fault injection against the real local stack: one harness for tests/test_chaos.py and benchmarks/chaos.py.

`run_chaos(config, log_dir)` starts the stack through `start_stack` (the entry point of
`scripts/run`), uploads real photos through `POST /api/images` in seeded bursts, and meanwhile
injects the faults of a seeded plan, one at a time:
- `kill_worker`: SIGKILL of a `-m app_tier` process while it holds a batch (PROCESSING rows);
- `kill_controller`: SIGKILL of the `-m controller` process;
- `kill_web_worker`: SIGKILL of one gunicorn worker of the web tier (a child of its master);
- `stall_endpoint`: SIGSTOP of the local AWS endpoint (`-m sightfleet.emulator` and its
  gunicorn worker) for a while, then SIGCONT;
- `poison`: every body of `poison_bodies()` sent straight to the request queue.
A sampler reads every accepted image's result row about once a second. Afterwards it checks
what must hold (every accepted image final exactly once with the right labels, rows never
rewritten once final, no worker death but ours, the stack still serving, the fleet back to zero)
and returns a `ChaosReport`: its figures, and `problems`, empty when all held.
Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from sightfleet.aws.sqs import Queue
from sightfleet.config import Settings
from sightfleet.contracts import FAILED, FINAL_STATUSES, JOB_VERSION, SUCCEEDED, new_image_id
from sightfleet.errors import SightfleetError
from sightfleet.resources import Resources
from tests.support import AWS_TEST_ENV, TESTDATA, LocalStack, descendants, jpeg_bytes, start_stack

log = logging.getLogger(__name__)

FAULT_KINDS = ("kill_worker", "kill_controller", "kill_web_worker", "stall_endpoint", "poison")
ALBUM = "chaos"
SAMPLE_S = 1.0
MID_BATCH_WAIT_S = 25.0     # how long kill_worker looks for a worker holding a batch
MAX_UPLOAD_ATTEMPTS = 6
RETRY_PAUSE_MAX_S = 5.0     # the most a client waits between attempts (Retry-After is capped here)
FIRST_FAULT_S = 3.0         # no fault in the first seconds of the load: the first uploads reach a queue
MAX_PAGES = 50              # of the album listing, 100 results each
CRASH_LINE = re.compile(r"worker pid (\d+) of (\S+) exited \(code (-?\d+)\) while its instance runs")
CHILD_EXIT_LINE = re.compile(r"\b([\w-]+) \(pid (\d+)\) exited with code (-?\d+)")
TRACEBACK = "Traceback (most recent call last)"


# --- the load: real photos and what each must come out as ----------------------------------------

@dataclass(frozen=True)
class Photo:
    """One photo of the load and its expected answer: labels (any of `label_words`), or FAILED when `bad`."""

    name: str
    data: bytes
    content_type: str = "image/jpeg"
    label_words: tuple[str, ...] = ()
    bad: bool = False

    def wrong(self, result: dict) -> str | None:
        """Why a final result is the wrong answer for this photo; None when it is right."""
        if self.bad:
            ok = result["status"] == FAILED and (result.get("error") or {}).get("code")
            return None if ok else f"a broken image ended {result['status']} (expected FAILED with a code)"
        if result["status"] != SUCCEEDED:
            return f"a good photo ended {result['status']}: {result.get('error')}"
        names = [label["Name"].lower() for label in result.get("labels") or []]
        if self.label_words and not any(word in name for name in names for word in self.label_words):
            return f"labels {names} have none of {list(self.label_words)}"
        return None


def photo_set() -> list[Photo]:
    """skimage photos with known labels, real camera files from shared/testdata, a large PNG and a broken JPEG."""
    from skimage import data

    samples = TESTDATA / "exif-samples" / "jpg"
    return [
        Photo("chelsea", jpeg_bytes("chelsea"), label_words=("cat",)),
        Photo("coffee", jpeg_bytes("coffee"), label_words=("cup", "espresso", "coffee")),
        Photo("stereo_motorcycle", _encoded(data.stereo_motorcycle()[0], "JPEG"), label_words=("motorcycle",)),
        # Larger than an SQS message: it travels as an S3 pointer job.
        Photo("astronaut-png", _encoded(data.astronaut(), "PNG"), "image/png", label_words=("person",)),
        Photo("Canon_40D", (samples / "Canon_40D.jpg").read_bytes()),
        Photo("DSCN0010-gps", (samples / "gps" / "DSCN0010.jpg").read_bytes()),
        Photo("landscape_6", (samples / "orientation" / "landscape_6.jpg").read_bytes()),
        # JPEG magic and a cut-off body: genuinely bad, so FAILED (or refused at the door) is right.
        Photo("truncated", jpeg_bytes("chelsea")[:9000], bad=True),
    ]


def _encoded(array, image_format: str) -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(array).save(out, image_format)
    return out.getvalue()


# Bodies that are valid jobs after all (unknown fields are ignored): processed, not dead-lettered.
PROCESSED_POISON = frozenset({"200 KB of unknown fields"})


def poison_bodies() -> list[tuple[str, str]]:
    """Request-queue bodies no worker may die of, by name; the job-shaped ones carry a fresh valid id."""
    def job(**changes) -> str:
        body = {"v": JOB_VERSION, "id": new_image_id(), "album": ALBUM, "filename": "poison.jpg",
                "content_type": "image/jpeg", "submitted_at": "2024-01-01T00:00:00.000Z", "size": 0,
                "inline_b64": base64.b64encode(jpeg_bytes("chelsea", scale=0.25)).decode()}
        body.update(changes)
        return json.dumps(body)

    return [
        ("non-JSON", "this is {not JSON"),
        ("JSON not an object", "[1, 2, 3]"),
        ("deep nesting", "[" * 5000 + "]" * 5000),
        ("id a number", job(id=5)),
        ("size a string", job(size="big")),
        ("bad base64", job(inline_b64="%%%not-base64%%%")),
        ("unknown version", job(v=999)),
        ("200 KB file name", job(filename="x" * 200_000)),
        ("200 KB of unknown fields", job(padding="x" * 200_000)),
    ]


# --- configuration and plan --------------------------------------------------------------------

@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run: the load, the faults (how many of each kind) and the bounds it is judged by."""

    seed: int = 12
    images: int = 16
    duration_s: float = 30.0          # uploads and faults are spread over this window
    burst: int = 4                    # uploads arrive in bursts, so workers hold whole batches
    faults: dict = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 1))
    stall_s: tuple[float, float] = (15.0, 30.0)   # an endpoint stall lasts between these
    max_instances: int = 2
    idle_grace_s: float = 8.0
    visibility_timeout_s: int = 10
    upload_clients: int = 4
    drain_timeout_s: float = 150.0    # after the load, for every accepted image to be final
    zero_bound_s: float = 40.0        # the fleet is back to zero within idle grace + this

    def stack_env(self) -> dict[str, str]:
        """The stack's settings for a small, fast-cycling fleet."""
        return {"SIGHTFLEET_MAX_INSTANCES": str(self.max_instances),
                "SIGHTFLEET_IDLE_GRACE_S": str(self.idle_grace_s),
                "SIGHTFLEET_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
                "SIGHTFLEET_CONTROLLER_TICK_S": "1", "SIGHTFLEET_TARGET_BACKLOG_PER_INSTANCE": "4"}

    @property
    def upload_timeout_s(self) -> float:
        """Long enough to ride out a stall: a request held through one is answered, not given up."""
        return self.stall_s[1] + 30.0


def plan_faults(config: ChaosConfig, rng: random.Random) -> list[tuple[float, str]]:
    """Seeded moments in the load window for each fault, in time order."""
    plan = [(rng.uniform(FIRST_FAULT_S, config.duration_s), kind)
            for kind, count in config.faults.items() for _ in range(count)]
    return sorted(plan)


def plan_uploads(config: ChaosConfig, rng: random.Random, photos: list[Photo]) -> list[tuple[float, Photo]]:
    """Seeded moments and photos of every upload, in bursts of config.burst."""
    bursts = -(-config.images // config.burst)
    starts = sorted(rng.uniform(0, config.duration_s * 0.8) for _ in range(bursts))
    return [(starts[n // config.burst], photos[n % len(photos)]) for n in range(config.images)]


# --- processes of the stack ----------------------------------------------------------------------

def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _runs_module(argv: list[str], module: str) -> bool:
    return any(a == "-m" and b == module for a, b in zip(argv, argv[1:]))


def module_pids(stack: LocalStack, module: str) -> list[int]:
    """Processes of the stack's tree running `python -m module`, oldest (lowest pid) first."""
    return sorted(pid for pid in descendants(stack.proc.pid) if _runs_module(_argv(pid), module))


def supervised_pid(stack: LocalStack, module: str) -> list[int]:
    """The supervisor's own child running `python -m module` (not the processes that one forked)."""
    return [pid for pid in module_pids(stack, module) if pid in _children(stack.proc.pid)]


def worker_pids_by_instance(stack: LocalStack) -> dict[str, int]:
    """Each worker process by the instance id the local host gave it."""
    found = {}
    for pid in module_pids(stack, "app_tier"):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"SIGHTFLEET_INSTANCE_ID="):
                found[entry.split(b"=", 1)[1].decode()] = pid
    return found


def web_worker_pids(stack: LocalStack) -> list[int]:
    """gunicorn workers of the web tier: children of the master, the gunicorn directly under the supervisor."""
    return sorted(child for master in supervised_pid(stack, "gunicorn") for child in _children(master))


def serving_pids(port: int, pids: list[int]) -> list[int]:
    """Those of pids holding an established TCP connection on 127.0.0.1:port: serving a request now."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":   # 01: ESTABLISHED
            inodes.add(f"socket:[{fields[9]}]")
    return [pid for pid in pids if inodes & _open_files(pid)]


def _open_files(pid: int) -> set[str]:
    """What each open file descriptor of pid points at ("socket:[inode]" for sockets)."""
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                found.add(os.readlink(fd))
            except OSError:
                continue   # closed meanwhile
    except OSError:
        pass   # the process ended
    return found


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()}
    except OSError:
        return set()


# --- what the harness records ----------------------------------------------------------------

@dataclass
class ClientUpload:
    """One photo a client uploads, retried after a 503 or no answer (each attempt is a new upload)."""

    number: int
    photo: Photo
    image_id: str | None = None
    refused: str | None = None              # a 4xx answer: not accepted, and not retried
    answers: Counter = field(default_factory=Counter)


@dataclass
class Fault:
    """One injected fault: when, what, and what exactly it hit."""

    at_s: float
    kind: str
    detail: str = ""
    pids: list = field(default_factory=list)
    done: bool = False


@dataclass
class ChaosReport:
    """The figures of one run and every check that did not hold."""

    config: ChaosConfig
    submitted: int = 0
    extra_uploads: int = 0      # of those, bursts sent so that a fault found work in hand
    accepted: int = 0
    refused: int = 0
    answers: Counter = field(default_factory=Counter)
    faults: list = field(default_factory=list)
    poison_sent: int = 0
    poison_dead: int = 0   # of those, the ones that are no job: each must reach the dead-letter queue
    final_states: Counter = field(default_factory=Counter)
    lost: list = field(default_factory=list)
    rewritten: list = field(default_factory=list)
    wrong: list = field(default_factory=list)
    unexplained_exits: list = field(default_factory=list)
    tracebacks: list = field(default_factory=list)
    orphans: Counter = field(default_factory=Counter)
    dead_letters: int | None = None
    drain_s: float | None = None
    zero_s: float | None = None
    stack_exit: int | None = None
    problems: list = field(default_factory=list)

    def problem(self, text: str) -> None:
        log.info("chaos problem: %s", text)
        self.problems.append(text)

    @property
    def crashed_by_input(self) -> int:
        """Worker deaths nobody caused on purpose: bad input (or a bug) killed them."""
        return sum(1 for line in self.unexplained_exits if CRASH_LINE.search(line))

    def lines(self) -> list[str]:
        """The figures, for people."""
        injected = Counter(f.kind for f in self.faults if f.done)
        return [
            f"seed {self.config.seed}: {self.submitted} uploads submitted ({self.extra_uploads} of them to give "
            f"faults work in hand), {self.accepted} accepted (202), "
            f"{self.refused} refused (4xx); {sum(self.answers.values())} attempts answered {dict(self.answers)}",
            f"faults injected: {dict(injected)} of {dict(Counter(f.kind for f in self.faults))} planned; "
            f"{self.poison_sent} poison messages ({self.poison_dead} of them no job)",
            *[f"  {f.at_s:6.1f} s {f.kind}: {f.detail}" for f in self.faults],
            f"final states: {dict(self.final_states)}",
            f"lost {len(self.lost)}, duplicated (rewritten once final) {len(self.rewritten)}, "
            f"wrong answers {len(self.wrong)}, crashed by input {self.crashed_by_input}, "
            f"unexplained exits {len(self.unexplained_exits)}, tracebacks {len(self.tracebacks)}",
            f"rows of unanswered uploads: {dict(self.orphans)}; dead letters {self.dead_letters}",
            f"time to drain {_seconds(self.drain_s)}; fleet back to zero {_seconds(self.zero_s)} later; "
            f"stack exit code {self.stack_exit}",
            f"problems: {len(self.problems)}", *[f"  - {p}" for p in self.problems],
        ]


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


# --- the run -----------------------------------------------------------------------------------

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
                                    f"-> {row['status']} ({_diff(first, row)})")
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
        pids = [pid for top in supervised_pid(self.stack, "sightfleet.emulator")
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


def resume(pids: list[int]) -> None:
    """SIGCONT each process (those already gone are skipped)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _job_id(body: str) -> list[str]:
    """The valid image id a poison body carries, if it carries one."""
    try:
        value = json.loads(body).get("id")
    except (ValueError, AttributeError, RecursionError):
        return []
    return [value] if isinstance(value, str) else []


def _diff(before: dict, after: dict) -> str:
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return "changed: " + ", ".join(changed)


# --- the checks ----------------------------------------------------------------------------------

def check_results(run: ChaosRun) -> None:
    """Every accepted image final once, with the right answer, and its result JSON equal to its row."""
    report, by_id = run.report, {u.image_id: u for u in run.uploads if u.image_id}
    try:
        rows = {r["id"]: r for r in run.resources.results.get_many(list(by_id))}
    except SightfleetError as exc:
        report.problem(f"results unreadable at the end ({exc}); judged by the last sample")
        rows = run.last_rows
    for image_id, item in by_id.items():
        row = rows.get(image_id)
        status = row["status"] if row else "NO ROW"
        report.final_states[status] += 1
        if row is None or status not in FINAL_STATUSES:
            report.lost.append(image_id)
            report.problem(f"accepted image {image_id} ({item.photo.name}) lost: {status} at the end")
            continue
        wrong = item.photo.wrong(row)
        if wrong:
            report.wrong.append(image_id)
            report.problem(f"image {image_id} ({item.photo.name}): {wrong}")
        _check_stored_json(run, row)


def _check_stored_json(run: ChaosRun, row: dict) -> None:
    try:
        stored = json.loads(run.resources.outputs.get(row["result_key"]))
    except (SightfleetError, KeyError, TypeError, ValueError) as exc:
        run.report.problem(f"image {row['id']}: no readable result JSON in the output bucket ({exc})")
        return
    if stored != row:
        run.report.rewritten.append(row["id"])
        run.report.problem(f"image {row['id']}: result JSON differs from its row ({_diff(stored, row)})")


def check_door(run: ChaosRun) -> None:
    """Only broken images may be refused; a good photo refused at the door is a wrong answer."""
    for item in run.uploads:
        if item.refused and not item.photo.bad:
            run.report.wrong.append(item.number)
            run.report.problem(f"upload {item.number} ({item.photo.name}) refused: {item.refused}")
    unanswered = [item for item in run.uploads if not item.image_id and not item.refused]
    if unanswered:
        answers = sum((item.answers for item in unanswered), Counter())
        run.report.problem(f"{len(unanswered)} uploads never accepted, after {sum(answers.values())} attempts "
                           f"answered {dict(answers)}")


def check_unanswered_and_poison(run: ChaosRun) -> None:
    """Rows the clients never saw accepted (a lost answer) and poison ids must not stay unfinished."""
    accepted = set(run.accepted_ids())
    try:
        rows = _album_rows(run.resources)
    except SightfleetError as exc:
        run.report.problem(f"album unreadable at the end: {exc}")
        return
    for row in rows:
        if row["id"] in accepted:
            continue
        poison = run.poison_ids.get(row["id"])
        what = f"poison {poison!r}" if poison else "upload without a 202"
        run.report.orphans[f"{'poison' if poison else 'unanswered'} {row['status']}"] += 1
        if row["status"] not in FINAL_STATUSES or (
                poison and (row["status"] == SUCCEEDED) != (poison in PROCESSED_POISON)):
            run.report.problem(f"{what} {row['id']} ({row.get('filename')}) left {row['status']}")
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        run.report.problem(f"album lists {len(ids) - len(set(ids))} images twice")
    try:
        counts = run.resources.dead_letters.counts()
        run.report.dead_letters = counts["visible"] + counts["in_flight"]
    except SightfleetError as exc:
        run.report.problem(f"dead-letter queue unreadable: {exc}")
        return
    if run.report.dead_letters < run.report.poison_dead:
        run.report.problem(f"{run.report.poison_dead} poison messages that are no job sent, "
                           f"{run.report.dead_letters} in the dead-letter queue")


def _album_rows(resources) -> list[dict]:
    rows, cursor = [], None
    for _ in range(MAX_PAGES):
        page, cursor = resources.results.page(ALBUM, limit=100, cursor=cursor)
        rows += page
        if not cursor:
            break
    return rows


def check_still_serving(run: ChaosRun) -> None:
    """/healthz answers 200 and a fresh cat is recognised."""
    if not run.stack_alive():
        run.report.problem(f"the stack exited (code {run.stack.proc.returncode}) during the run")
        return
    try:
        health = run.stack.get("/healthz", timeout=10)
        fresh = run.stack.post("/api/images", params={"album": ALBUM, "wait": 60},
                               files={"file": ("fresh-chelsea.jpg", jpeg_bytes("chelsea"), "image/jpeg")},
                               timeout=90)
    except requests.RequestException as exc:
        run.report.problem(f"the web tier does not answer after the run: {exc}")
        return
    if health.status_code != 200:
        run.report.problem(f"/healthz {health.status_code} after the run: {health.text[:300]}")
    images = fresh.json().get("images", [{}]) if fresh.headers.get("content-type", "").startswith(
        "application/json") else [{}]
    wrong = Photo("chelsea", b"", label_words=("cat",)).wrong(images[0]) if images[0].get("status") else \
        f"answer {fresh.status_code}: {fresh.text[:300]}"
    if fresh.status_code != 200 or wrong:
        run.report.problem(f"a fresh upload after the run did not succeed: {wrong}")


def check_fleet_back_to_zero(run: ChaosRun) -> None:
    """No instance and no worker process within idle grace + the bound."""
    if not run.stack_alive():
        return   # reported already: the stack exited
    started, bound = time.monotonic(), run.config.idle_grace_s + run.config.zero_bound_s
    while time.monotonic() - started < bound and run.stack_alive():
        run.stack.track()
        try:
            # Workers frozen in the warm pool (state T, their instance stopped) are not running.
            empty = not run.resources.fleet.instances() and not [
                pid for pid in module_pids(run.stack, "app_tier") if _proc_state(pid) != "T"]
        except SightfleetError:
            empty = False
        if empty and run.stack_alive():   # a stopping stack empties its fleet too
            run.report.zero_s = round(time.monotonic() - started, 1)
            return
        time.sleep(0.5)
    run.report.problem(f"the fleet was not back to zero within {bound:.0f} s (idle grace + "
                       f"{run.config.zero_bound_s:.0f} s)")


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def check_log(run: ChaosRun) -> None:
    """Every worker or child exit in the stack log is one of our kills; no traceback anywhere."""
    text = run.stack.log_text()
    for line in unexplained_deaths(text, run.killed):
        run.report.unexplained_exits.append(line)
        run.report.problem(f"a process died that no fault killed: {line}")
    for excerpt in tracebacks(text):
        run.report.tracebacks.append(excerpt)
        run.report.problem(f"traceback in the stack log:\n{excerpt}")


def unexplained_deaths(text: str, killed: set[int]) -> list[str]:
    """Lines of the stack log where a worker or a supervised child died and no kill of ours explains it."""
    found = []
    for line in text.splitlines():
        crash, child = CRASH_LINE.search(line), CHILD_EXIT_LINE.search(line)
        pid = int(crash.group(1)) if crash else int(child.group(2)) if child else None
        if pid is not None and pid not in killed:
            found.append(line.strip())
    return found


def tracebacks(text: str, context: int = 2, frames: int = 2, limit: int = 8) -> list[str]:
    """Each traceback in text, short: a few lines before it, its innermost frames and its exception line."""
    lines, found = text.splitlines(), []
    for n, line in enumerate(lines):
        if TRACEBACK in line and len(found) < limit:
            end = n + 1
            while end < len(lines) and lines[end].startswith((" ", "\t")):
                end += 1
            frame_lines = [each for each in lines[n + 1:end] if each.lstrip().startswith("File ")]
            found.append("\n".join([*lines[max(0, n - context):n + 1], *frame_lines[-frames:],
                                    *lines[end:end + 1]]))
    return found


def run_chaos(config: ChaosConfig, log_dir: Path,
              on_progress: Callable[[int, int], None] | None = None) -> tuple[ChaosReport, LocalStack]:
    """Start the stack, load it under the planned faults, check everything; the stack is stopped on return."""
    photos = photo_set()
    for name, value in AWS_TEST_ENV.items():   # the harness reads the stack's state with boto3 too
        os.environ.setdefault(name, value)
    stack = start_stack(log_dir, **config.stack_env())
    run = ChaosRun(config, stack, photos, on_progress)
    try:
        _load_under_faults(run)
        check_results(run)
        check_door(run)
        check_unanswered_and_poison(run)
        check_still_serving(run)
        check_fleet_back_to_zero(run)
    finally:
        run.stop.set()
        run.clients.shutdown(wait=True, cancel_futures=True)   # each upload is bounded, and stop ends retries
        resume(module_pids(stack, "sightfleet.emulator"))   # never leave a stopped endpoint behind
        run.report.stack_exit = stack.stop()
    check_log(run)
    _summarise(run)
    return run.report, stack


def _load_under_faults(run: ChaosRun) -> None:
    run._started = time.monotonic()
    sampler = threading.Thread(target=run.run_sampler, name="sampler", daemon=True)
    injector = threading.Thread(target=run.run_faults, name="faults", daemon=True)
    sampler.start()
    injector.start()
    run.run_load()
    injector.join(run.config.duration_s + run.config.stall_s[1] * run.config.faults.get("stall_endpoint", 0)
                  + MID_BATCH_WAIT_S * sum(run.config.faults.values()) + 60)
    run.clients.shutdown(wait=True)   # every upload answered (each is bounded) before the drain
    run.sampled_enough.set()
    sampler.join(90)   # a sample may sit out a stall's last seconds
    run.drain()


def _summarise(run: ChaosRun) -> None:
    report = run.report
    report.faults = run.faults
    report.submitted = len(run.uploads)
    report.accepted = len(run.accepted_ids())
    report.refused = sum(1 for u in run.uploads if u.refused)
    for item in run.uploads:
        report.answers.update(item.answers)
    if report.stack_exit != 0:
        report.problem(f"the stack stopped with exit code {report.stack_exit} (expected 0 after Ctrl-C)")
