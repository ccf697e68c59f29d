"""A cold worker's start-up: the models loaded on a thread of their own while it already polls, and its phases timed.

The first long poll needs only the queue and the fleet table; the models (0.4-0.9 s from the
cached IR here, more with several workers starting on two cores) load meanwhile, started once
the clients exist (both are mostly Python and would share the GIL). A job received before they
are ready waits for them: its claim and fetch are already under way by then.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from app_tier.batches import Feedable
    from app_tier.pipeline import ImageInput, Outcome
    from app_tier.pipeline.pipeline import Pending

log = logging.getLogger(__name__)
T = TypeVar("T")
# While the models load, a poll returns within this, so that a worker whose models fail to load
# ends promptly instead of looking idle for a whole long poll.
LOADING_POLL_S = 1
# Workers sharing one machine (the local EC2 host's) load their models at most one per core at a
# time: four loading at once on two cores would each be ready after all four loads' CPU time,
# one after another the first is ready after its own. One worker per instance (AWS) never waits.
# Per user: another account's processes must not be able to hold every slot.
LOAD_SLOTS_DIR = Path(tempfile.gettempdir()) / f"sightfleet-model-loads-{os.getuid()}"
LOAD_SLOT_NAP_S = 0.05
# Slots only order the loads: past this wait a worker loads anyway rather than stand idle for good.
LOAD_SLOT_MAX_WAIT_S = 60
# A load still running after this has hung (a first conversion of the models takes about a minute on
# two busy cores; a load from the cached files about a second): the worker ends as crashed instead of
# holding its instance alive forever, and its host or EC2 replaces it.
LOAD_DEADLINE_S = 600


def process_started_at() -> float:
    """When this process started (epoch s), from the kernel's count; now where /proc cannot tell."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up_s = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.time()
    return time.time() - max(0.0, up_s - started_ticks / ticks)


class StartupClock:
    """Seconds from the process's start to each start-up phase, said in one log line each time it matters."""

    def __init__(self, origin: float | None = None):
        self.origin = process_started_at() if origin is None else origin
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> float:
        """Record that a phase ended now; returns its time since the process started."""
        self.phases[phase] = round(time.time() - self.origin, 3)
        return self.phases[phase]

    def summary(self) -> str:
        return ", ".join(f"{phase} {at:.2f} s" for phase, at in self.phases.items())


@contextlib.contextmanager
def load_slot(slots: int | None = None, folder: Path = LOAD_SLOTS_DIR) -> Iterator[None]:
    """One of this machine's `slots` (its cores) for a model load, held while the block runs; best effort.

    A slot is an flock on a file: the kernel frees it when its holder dies, so none is ever lost.
    """
    slots = slots or os.cpu_count() or 1
    try:
        folder.mkdir(mode=0o777, parents=True, exist_ok=True)
        handles = [open(folder / f"slot-{n}.lock", "a+") for n in range(slots)]
    except OSError as exc:
        log.debug("no load slots (%s): loading at once", exc)
        yield
        return
    try:
        held = _take_slot(handles)
        try:
            yield
        finally:
            if held is not None:
                fcntl.flock(held, fcntl.LOCK_UN)
    finally:
        for handle in handles:
            handle.close()


def _take_slot(handles: list, max_wait_s: float = LOAD_SLOT_MAX_WAIT_S) -> object | None:
    """The first slot free, waiting (in short naps) while every one is held; None after max_wait_s."""
    waited = time.monotonic()
    while time.monotonic() - waited < max_wait_s:
        for handle in handles:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if time.monotonic() - waited > LOAD_SLOT_NAP_S:
                log.info("waited %.2f s for a model-load slot (other workers on this machine were loading)",
                         time.monotonic() - waited)
            return handle
        time.sleep(LOAD_SLOT_NAP_S)
    log.warning("every model-load slot stayed held for %.0f s: loading without one", max_wait_s)
    return None


class LoadingPipeline:
    """The pipeline, loaded on its own thread from the moment this is made; using it waits for the load.

    A pipeline that failed to load raises its error again on the reading thread.
    """

    def __init__(self, factory: Callable[[], Feedable], clock: StartupClock | None = None,
                 deadline_s: float | None = None):
        self.load_seconds: float | None = None
        self._deadline_s = deadline_s or LOAD_DEADLINE_S
        self._deadline = time.monotonic() + self._deadline_s
        self.loaded_at: float | None = None   # time.monotonic() when loaded
        self._clock = clock
        self._loaded = threading.Event()
        self._pipeline: Feedable | None = None
        self._error: BaseException | None = None
        # Started by the caller's thread, at its priority: the models' own thread inherits it.
        self._thread = threading.Thread(target=self._load, args=(factory,), name="load-models", daemon=True)
        self._thread.start()

    def _load(self, factory: Callable[[], Feedable]) -> None:
        started = time.monotonic()
        try:
            with load_slot():
                self._pipeline = factory()
        except BaseException as exc:  # noqa: BLE001 - raised again on the thread that needs the models
            self._error = exc
            log.error("the models failed to load: %s", exc, exc_info=True)
        else:
            self.loaded_at = time.monotonic()
            self.load_seconds = round(self.loaded_at - started, 3)
            since = f", {self._clock.mark('models loaded'):.2f} s after the process started" if self._clock else ""
            log.info("models loaded in %.2f s%s", self.load_seconds, since)
        finally:
            self._loaded.set()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self._error is None

    @property
    def failed(self) -> BaseException | None:
        """The error the load ended with (a hung load's, past the deadline); None while loading or loaded."""
        if not self._loaded.is_set():
            return self._hung() if time.monotonic() >= self._deadline else None
        return self._error

    def wait(self) -> Feedable:
        """The pipeline, once loaded; raises what the load raised, or TimeoutError once it has hung."""
        if not self._loaded.wait(max(0.0, self._deadline - time.monotonic())):
            raise self._hung()
        if self._error is not None:
            raise self._error
        return self._pipeline

    def _hung(self) -> TimeoutError:
        return TimeoutError(f"the models did not load within {self._deadline_s:.0f} s")

    # What the job path uses of the pipeline (app_tier/batches.py's Feedable), each once it is loaded.

    @property
    def AHEAD(self) -> int:  # noqa: N802 - the pipeline's constant
        return self.wait().AHEAD

    def chunks(self, items: Iterable[T]) -> Iterator[list[T]]:
        return self.wait().chunks(items)

    def submit(self, inputs: Sequence[ImageInput]) -> Pending:
        return self.wait().submit(inputs)

    def collect(self, pending: Pending) -> list[Outcome]:
        return self.wait().collect(pending)
