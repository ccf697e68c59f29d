"""The worker loop: poll, process, stay alive on bad input, and retire the instance when idle."""
from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING

from app_tier.heartbeat import Heartbeat
from app_tier.jobs import BatchRunner, Intake
from sightfleet.contracts import utc_now
from sightfleet.errors import SightfleetError

if TYPE_CHECKING:
    from sightfleet.resources import Resources

log = logging.getLogger(__name__)
# Exit status of a worker whose watchdog found its pipeline hung (EX_SOFTWARE): a crash, so that
# systemd restarts the process on AWS and the local EC2 host replaces the instance.
STALLED_EXIT = 70


class _StopPolling(BaseException):
    """Raised from the signal handler to cut a long poll short when no job is in hand.

    A BaseException, like KeyboardInterrupt, because botocore retries on plain exceptions.
    """


class Worker:
    """One worker process on one instance, in the manner of rq's Worker.work()."""

    def __init__(self, resources: Resources, pipeline_factory, instance_id: str, can_terminate: bool = True):
        self.settings = resources.settings
        self._r = resources
        self._pipeline_factory = pipeline_factory
        self.instance_id = instance_id
        self._can_terminate = can_terminate
        self._stop_requested = False
        self._polling = False
        self.counters: Counter = Counter()
        self.status = {"instance_id": instance_id, "launched_at": utc_now(), "model_load_s": None, "current": []}
        self._heartbeat = Heartbeat(resources, instance_id, self._describe, on_stall=self._stalled)

    def work(self) -> str:
        """Run until stopped or idle; returns why the loop ended."""
        self._install_signal_handlers()
        self._heartbeat.start()
        reason = "stopped"
        runner = ahead = None
        try:
            runner = self._load()
            last_work = time.monotonic()
            while True:
                if self._stop_requested:
                    log.info("stop requested; leaving the loop")
                    break
                idle_s = time.monotonic() - last_work
                if idle_s >= self.settings.idle_grace_s and self._may_retire():
                    log.info("idle for %.0f s with no messages held; retiring", idle_s)
                    reason = "idle"
                    break
                intake = ahead or runner.take(self._poll(self.settings.idle_grace_s - idle_s))
                ahead = None
                if intake:
                    ahead = self._run_batch(runner, intake)
                    last_work = time.monotonic()
        except _StopPolling:
            log.info("stop requested while waiting for work")
        except Exception:
            log.exception("the worker loop failed; handing back its work and exiting")
            reason = "crashed"
            raise
        finally:
            self._teardown(runner, ahead, reason)
        return reason

    def _teardown(self, runner: BatchRunner | None, ahead: Intake | None, reason: str) -> None:
        """Each step whatever the one before it raised: hand back, close, final heartbeat, retire."""
        if runner is not None:
            if ahead:
                _attempt("hand back the batch received ahead", runner.hand_back, ahead)
            _attempt("finish the open batches", runner.close)
        self._shutdown(reason)

    def _load(self) -> BatchRunner:
        started = time.monotonic()
        pipeline = self._pipeline_factory()
        self.status["model_load_s"] = round(time.monotonic() - started, 3)
        log.info("models loaded in %.2f s", self.status["model_load_s"])
        self._heartbeat.announce("idle")
        return BatchRunner(self._r, pipeline, self.instance_id, self._heartbeat, self.counters)

    def _poll(self, idle_left_s: float):
        """Long-poll for work, no longer than the idle time left."""
        wait_s = int(max(1, min(self.settings.receive_wait_s, idle_left_s + 1)))
        self._polling = True
        try:
            return self._r.requests.receive(self.settings.receive_batch, wait_s)
        except SightfleetError as exc:
            log.warning("receive failed (%s); backing off", exc)
            time.sleep(min(5.0, wait_s))
            return []
        finally:
            self._polling = False

    def _poll_ahead(self) -> list:
        """A poll for the next batch made while this one runs; no waiting, so it never holds the batch up."""
        if self._stop_requested:
            return []   # it would only be handed back, one of its receives spent
        try:
            return self._r.requests.receive(self.settings.receive_batch, 0)
        except SightfleetError as exc:
            log.warning("receive ahead failed (%s)", exc)
            return []

    def _run_batch(self, runner: BatchRunner, intake: Intake) -> Intake | None:
        """Run one batch; returns the next one, received ahead, when this one was full (a backlog)."""
        self.status["current"] = [m.id for m in intake.messages]
        self._heartbeat.announce("busy")
        backlog = len(intake.messages) >= self.settings.receive_batch and not self._stop_requested
        ahead = None
        try:
            ahead = runner.run(intake, self._poll_ahead if backlog else None)
            return ahead
        finally:
            self.status["current"] = []
            if ahead is None:   # with the next batch in hand the worker stays busy: no idle/busy flicker
                self._heartbeat.announce("idle")

    def _describe(self) -> dict:
        # Counts are read at each beat: they also move after a batch returns, as its last writes finish.
        counts = {"images_done": self.counters["succeeded"], "images_failed": self.counters["failed"]}
        return {**self.status, **counts}

    def _may_retire(self) -> bool:
        """Retire only if allowed and not among the oldest min_instances, which keep the floor."""
        if not self._can_terminate:
            return False
        try:
            # Oldest first: idle workers retiring together still leave the oldest `min` running.
            ids = [instance.id for instance in self._r.fleet.instances()]
            return self.instance_id in ids[self.settings.min_instances:]
        except SightfleetError as exc:
            log.warning("cannot count the fleet (%s); staying up", exc)
            return False

    def _shutdown(self, reason: str) -> None:
        # The heartbeat stops first, so no round of it extends what is handed back here.
        _attempt("stop the heartbeat", self._heartbeat.stop)
        held = self._heartbeat.held()
        if held:
            # Give unfinished messages back at once so another worker can take them.
            if _attempt("hand back unfinished messages", self._r.requests.set_visibility, held, 0):
                log.info("handed back %s unfinished messages", len(held))
        self._heartbeat.beat("terminated" if reason == "idle" else reason)
        if reason == "idle" and _attempt("terminate own instance", self._r.fleet.terminate, [self.instance_id]):
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
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)


def _attempt(what: str, call, *args) -> bool:
    """Run one teardown step; log and carry on if it fails, so the next step still runs."""
    try:
        call(*args)
        return True
    except Exception as exc:  # noqa: BLE001 - teardown must reach its end
        log.error("could not %s: %s", what, exc)
        return False
