"""The worker loop: poll, process, stay alive on bad input, and when idle go into the warm pool or retire.

An idle worker holding no messages stops its own instance into the stack's warm pool (hibernated:
process and models stay in memory) while the pool has room, else terminates it. Started again, it
carries on where it stopped: idle timer reset, a heartbeat at once, then the long poll.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections import Counter
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from app_tier import idle
from app_tier.heartbeat import Heartbeat
from app_tier.batches import Batch, Batches, Feedable
from app_tier.jobs import BatchRunner
from app_tier.oversight import Oversight
from app_tier.startup import LOADING_POLL_S, LoadingPipeline, StartupClock
from sightfleet.contracts import utc_now
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import ALL_STATES, LIVE_STATES, POOLED_STATES, Message

if TYPE_CHECKING:
    from sightfleet.resources import Resources

log = logging.getLogger(__name__)
# Exit status of a worker whose watchdog found its pipeline hung (EX_SOFTWARE): a crash, so that
# systemd restarts the process on AWS and the local EC2 host replaces the instance.
STALLED_EXIT = 70
# While in the pool: how often the worker looks whether it was started again (locally the host's
# SIGCONT cuts this short; on AWS a resumed instance finds out at the next look).
RESUME_CHECK_S = 1.0
RESUME_NAP_S = 0.1
POOLED = idle.POOL


class _StopPolling(BaseException):
    """Raised from the signal handler to cut a long poll short when no job is in hand.

    A BaseException, like KeyboardInterrupt, because botocore retries on plain exceptions.
    """


class Worker:
    """One worker process on one instance, in the manner of rq's Worker.work()."""

    def __init__(self, resources: Resources, pipeline_factory: Callable[[], Feedable] | LoadingPipeline,
                 instance_id: str, can_terminate: bool = True,
                 startup: StartupClock | None = None):
        """pipeline_factory: makes the pipeline (on a thread of its own), or is a LoadingPipeline already loading."""
        self.settings = resources.settings
        self._resources = resources
        self._pipeline_factory = pipeline_factory
        self.instance_id = instance_id
        self._can_terminate = can_terminate
        self._stop_requested = False
        self._polling = False
        self._continued = False   # set by SIGCONT: the local host resumed this process
        self.counters: Counter = Counter()
        self.status = {"instance_id": instance_id, "launched_at": utc_now(), "current": [],
                       "resumes": 0, "pooled_s": 0.0, "pooled_at": None, "last_resume_s": None}
        self._oversight = Oversight(resources)   # the operators' pause and run-time settings; what it reports
        self._heartbeat = Heartbeat(resources, instance_id, self._describe, on_stall=self._stalled)
        self._startup = startup or StartupClock()
        self._models: LoadingPipeline | None = None
        self._last_work = time.monotonic()

    def work(self) -> str:
        """Run until stopped or idle; returns why the loop ended. Each exit is a logged break."""
        self._install_signal_handlers()
        self._heartbeat.start()
        reason = "stopped"
        runner = batches = None
        try:
            runner = self._load()
            batches = Batches(runner, self._poll, self._poll_ahead, self.settings.receive_batch)
            for batch in batches:
                self._check_models(runner, batch)
                if batch:
                    self._run(runner, batch, batches)
                if self._stop_requested:
                    log.info("stop requested; leaving the loop")
                    break
                if batches.ahead() is None and self._retires():
                    reason = "idle"
                    break
        except _StopPolling:
            log.info("stop requested while waiting for work")
        except Exception:
            log.exception("the worker loop failed; handing back its work and exiting")
            reason = "crashed"
            raise
        finally:
            self._teardown(runner, batches, reason)
        return reason

    def _teardown(self, runner: BatchRunner | None, batches: Batches | None, reason: str) -> None:
        """Each step whatever the one before it raised: hand back, close, final heartbeat, retire."""
        if batches is not None:
            _attempt("hand back the batch received ahead", batches.hand_back)
        if runner is not None:
            _attempt("finish the open batches", runner.close)
        self._shutdown(reason)

    def _load(self) -> BatchRunner:
        """The models loading on their own thread (started here unless already); the first poll does not wait."""
        factory = self._pipeline_factory
        self._models = factory if isinstance(factory, LoadingPipeline) else LoadingPipeline(factory, self._startup)
        self._heartbeat.announce("idle")
        self._last_work = time.monotonic()
        return BatchRunner(self._resources, self._models, self.instance_id, self._heartbeat, self.counters,
                           on_stage=self._oversight.stage)

    def _check_models(self, runner: BatchRunner, batch: Batch | None) -> None:
        """Raise what the models' load raised; a batch received meanwhile is handed back first, not lost.

        With a batch in hand and the models still loading, wait for them (its claims and fetches run meanwhile).
        """
        if self._models.ready or (batch is None and self._models.failed is None):
            return
        if batch is not None and self._models.failed is None:
            log.info("%s jobs received while the models load; waiting for them", len(batch.messages))
        try:
            self._models.wait()
        except BaseException:
            if batch is not None:
                _attempt("hand back the jobs received while the models loaded", runner.hand_back, batch)
            raise

    def _idle_s(self) -> float:
        """Seconds since the last batch; idle counts from the models' arrival, so none leaves mid-load."""
        self._last_work = max(self._last_work, self._models.loaded_at or time.monotonic())
        return time.monotonic() - self._last_work

    def _retires(self) -> bool:
        """The idle rule applied: True to retire; False to keep polling (also after a stay in the warm pool)."""
        # Paused: idle for good (it polls nothing), so it goes into the pool, or retires, at once.
        idle_s = math.inf if self._oversight.paused() else self._idle_s()
        step = self._idle_step(idle_s)
        if step == POOLED and self._pool(idle_s):
            self._last_work = time.monotonic()
            return False
        if step:
            log.info("idle for %.0f s with no messages held; retiring", idle_s)
            return True
        return False

    def _poll(self) -> list[Message]:
        """Long-poll for work, no longer than the idle time left."""
        if self._stop_requested:
            raise _StopPolling()
        if self._oversight.paused():
            time.sleep(RESUME_CHECK_S)
            return []
        wait_s = idle.poll_wait_s(self._idle_left_s(self._idle_s()), self.settings.receive_wait_s)
        if not self._models.ready:
            wait_s = min(wait_s, LOADING_POLL_S)   # a load that fails is seen within this
        if "first poll" not in self._startup.phases:
            self._startup.mark("first poll")
            log.info("start-up, seconds since the process started: %s", self._startup.summary())
        self._polling = True
        try:
            return self._oversight.unless_paused(self._resources.requests,
                                                 self._resources.requests.receive(self.settings.receive_batch, wait_s))
        except SightfleetError as exc:
            log.warning("receive failed (%s); backing off", exc)
            time.sleep(min(5.0, wait_s))
            return []
        finally:
            self._polling = False

    def _poll_ahead(self) -> list[Message]:
        """A poll for the next batch made while this one runs; no waiting, so it never holds the batch up."""
        if self._stop_requested or self._oversight.paused():
            return []   # it would only be handed back, one of its receives spent
        try:
            return self._resources.requests.receive(self.settings.receive_batch, 0)
        except SightfleetError as exc:
            log.warning("receive ahead failed (%s)", exc)
            return []

    def _run(self, runner: BatchRunner, batch: Batch, batches: Batches) -> None:
        """Run one batch, busy meanwhile; still busy after it while the next one, received ahead, waits."""
        self.status["current"] = [m.id for m in batch.messages]
        self._oversight.working_on(batch.messages, "claiming")
        self._heartbeat.announce("busy")
        try:
            runner.run(batch)
        finally:
            self.status["current"] = []
            self._oversight.done()
            self._last_work = time.monotonic()
            if batches.ahead() is None:   # no idle/busy flicker through a backlog
                self._heartbeat.announce("idle")

    def _describe(self) -> dict:
        # Counts are read at each beat: they also move after a batch returns, as its last writes finish.
        counts = {"images_done": self.counters["succeeded"], "images_failed": self.counters["failed"],
                  "model_load_s": self._models.load_seconds if self._models else None}
        return {**self.status, **counts, **self._oversight.figures()}

    def _idle_left_s(self, idle_s: float) -> float:
        """Seconds until the next idle deadline (app_tier/idle.py)."""
        return idle.idle_left_s(idle.IdleRules.from_settings(self._oversight.settings(self.settings)), idle_s)

    def _idle_step(self, idle_s: float) -> str | None:
        """POOLED, "retire" or None (keep polling): app_tier/idle.py's rule on one listing of the stack."""
        rules = idle.IdleRules.from_settings(self._oversight.settings(self.settings))
        if not idle.needs_fleet(rules, idle_s, bool(self._heartbeat.held()), self._can_terminate):
            return None
        try:
            every = self._resources.fleet.instances(states=ALL_STATES)
        except SightfleetError as exc:
            log.warning("cannot count the fleet (%s); staying up", exc)
            return None
        live = [i.id for i in every if i.state in LIVE_STATES]   # oldest first
        rank = live.index(self.instance_id) if self.instance_id in live else None
        return idle.idle_step(rules, idle_s, rank, sum(1 for i in every if i.state in POOLED_STATES))

    def _pool(self, idle_s: float) -> bool:
        """Stop this instance into the warm pool and wait to be started; False if it cannot be stopped."""
        pooled_at = datetime.now(timezone.utc)
        self.status["pooled_at"] = utc_now()
        self._heartbeat.beat(POOLED)
        try:
            hibernating = self._resources.fleet.stop([self.instance_id])
        except SightfleetError as exc:
            log.warning("cannot stop own instance into the warm pool (%s); retiring instead", exc)
            self.status["pooled_at"] = None
            return False
        log.info("idle for %.0f s with no messages held; into the warm pool (%s)", idle_s,
                 "hibernating" if hibernating else "plain stop: this process ends with the OS, a new one starts")
        # Wall-clock time: the monotonic clock stands still while a hibernated VM is suspended.
        started = time.time()
        try:
            up_since = self._await_start(pooled_at)
        finally:   # also when terminated from the pool: that time was not running either
            self.status["pooled_s"] = round(self.status["pooled_s"] + time.time() - started, 3)
            self.status["pooled_at"] = None
        self.status["resumes"] += 1
        # The warm start: from StartInstances to this worker polling again (the cold start is model_load_s).
        self.status["last_resume_s"] = round(max(0.0, time.time() - up_since.timestamp()), 3)
        self._heartbeat.beat("idle")   # at once: the controller counts the heartbeat timeout from the start
        log.info("started again from the warm pool after %.1f s in it; polling", time.time() - started)
        return True

    def _await_start(self, pooled_at: datetime) -> datetime:
        """Until EC2 lists this instance started after pooled_at (returns when); SIGTERM ends the wait."""
        next_check = time.monotonic() + RESUME_CHECK_S
        while True:
            self._polling = True   # SIGTERM cuts the wait short, as it does a long poll
            try:
                time.sleep(RESUME_NAP_S)
            finally:
                self._polling = False
            if self._stop_requested:
                raise _StopPolling()
            if not self._continued and time.monotonic() < next_check:
                continue
            self._continued, next_check = False, time.monotonic() + RESUME_CHECK_S
            started_at = self._started_since(pooled_at)
            if started_at:
                return started_at

    def _started_since(self, pooled_at: datetime) -> datetime | None:
        """When this instance was started again, if EC2 lists it live and started after pooled_at."""
        try:
            mine = [i for i in self._resources.fleet.instances(states=ALL_STATES) if i.id == self.instance_id]
        except SightfleetError as exc:
            log.warning("cannot see whether this instance was started again (%s); looking again", exc)
            return None
        if mine and mine[0].state in LIVE_STATES and mine[0].up_since > pooled_at:
            return mine[0].up_since
        return None

    def _shutdown(self, reason: str) -> None:
        # The heartbeat stops first, so no round of it extends what is handed back here.
        _attempt("stop the heartbeat", self._heartbeat.stop)
        held = self._heartbeat.held()
        if held:
            # Give unfinished messages back at once so another worker can take them.
            if _attempt("hand back unfinished messages", self._resources.requests.set_visibility, held, 0):
                log.info("handed back %s unfinished messages", len(held))
        self._heartbeat.beat("terminated" if reason == "idle" else reason)
        if reason == "idle" and _attempt("terminate own instance", self._resources.fleet.terminate, [self.instance_id]):
            log.info("terminated own instance")
        log.info("worker exits (%s) after %s succeeded, %s failed",
                 reason, self.counters["succeeded"], self.counters["failed"])

    def _stalled(self) -> None:
        """The watchdog's verdict (on the heartbeat thread): the pipeline is hung, so end the process now.

        The main thread is stuck in C code and cannot be interrupted; the held messages were handed back.
        """
        log.error("worker exits (stalled) after %s succeeded, %s failed",
                  self.counters["succeeded"], self.counters["failed"])
        logging.shutdown()
        os._exit(STALLED_EXIT)

    def _install_signal_handlers(self) -> None:
        def request_stop(signum, _frame):
            log.info("received %s; finishing the current batch first", signal.Signals(signum).name)
            self._stop_requested = True
            # Only a long poll is cut short; a batch, or the shutdown itself, runs to its end.
            if self._polling:
                raise _StopPolling()
        def continued(_signum, _frame):
            self._continued = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGCONT, continued)


def _attempt(what: str, call, *args) -> bool:
    """Run one teardown step; log and carry on if it fails, so the next step still runs."""
    try:
        call(*args)
        return True
    except Exception as exc:  # noqa: BLE001 - teardown must reach its end
        log.error("could not %s: %s", what, exc)
        return False
