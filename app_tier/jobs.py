"""One job's way from receive to delete: claim -> fetch -> pipeline -> store -> acknowledge.

Each step lets the job go on (it returns None) or reports what happened where the job's way ends
there (a `Happened`); an exception a step raises is sorted into such a kind too (`_attempt`). The
pure rule of app_tier/endings.py decides the ending from that, the receive count and the limit, and
`_end` applies it: acknowledged, handed back, or a FAILED result recorded (which is a step in turn).
Each message's fate is its own: one failed write never holds back the others.

Threads, all of the job path's: claims, fetches and the poll for the next batch run on the intake
threads; each image is prepared on the worker's main thread (its per-image time limit needs it)
while the models run on earlier ones on the pipeline's models thread (app_tier/batches.py feeds
them); stores run on the storage threads; responses and deletes go out ten per call on the
acknowledge thread once a batch's stores are done, while the worker polls for more.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_all
from typing import TYPE_CHECKING

from app_tier.batches import Batch, Feedable, Submitted, JobInProgress
from app_tier.endings import (
    ACKNOWLEDGE, DONE, FAIL, FOREIGN, INPUT_GONE, NOT_A_JOB, PIPELINE_FAILED, REJECTED, TOO_LARGE, UNAVAILABLE,
    UNEXPECTED, Ending, Happened, ending,
)
from app_tier.heartbeat import Heartbeat
from app_tier.pipeline import Outcome
from sightfleet import labelindex
from sightfleet.contracts import FAILED, Job, Result, clip, foreign_input, is_deleted, owner_of, response_message
from sightfleet.deletion import purge
from sightfleet.errors import ConditionFailed, Invalid, InvalidJob, NoSuchObject, SightfleetError
from sightfleet.interfaces import Message
from sightfleet.procs import lower_priority

if TYPE_CHECKING:
    from sightfleet.resources import Resources

log = logging.getLogger(__name__)
RETRY_DELAY_S = 10
IO_THREADS = 2
Step = Callable[..., "Happened | None"]


class BatchRunner:
    """Turns received messages into stored results; every write is keyed by image id."""

    def __init__(self, resources: Resources, pipeline: Feedable, instance_id: str, heartbeat: Heartbeat,
                 counters: Counter, io_threads: int = IO_THREADS,
                 on_stage: Callable[[str, str], None] | None = None):
        """on_stage(image id, stage): told as each image moves on (what operators see of a worker)."""
        self._resources = resources
        self._on_stage = on_stage or (lambda image_id, stage: None)
        self._pipeline = pipeline
        self._instance_id = instance_id
        self._heartbeat = heartbeat
        self._counters = counters
        self._lock = threading.Lock()
        self._acks: list[tuple[JobInProgress, dict]] = []
        # Storage calls wait on the network; threads overlap them with the models' CPU work.
        # Claims have their own threads so that a batch's first image never queues behind
        # the previous batch's writes.
        self._intake = ThreadPoolExecutor(io_threads, thread_name_prefix="intake", initializer=lower_priority)
        self._io = ThreadPoolExecutor(io_threads, thread_name_prefix="storage", initializer=lower_priority)
        # Acknowledges a batch once its writes are done, while the worker already polls for more.
        self._acker = ThreadPoolExecutor(1, thread_name_prefix="acknowledge", initializer=lower_priority)
        self._finishing: Future | None = None

    # --- the batch ------------------------------------------------------------------------------

    def take(self, messages: list[Message]) -> Batch | None:
        """Hold the messages (visibility heartbeat) and start claiming and fetching them; None for none."""
        if not messages:
            return None
        self._heartbeat.hold([m.receipt for m in messages])
        return Batch(messages, self._intake.map(self._take_in, messages))

    def receive_ahead(self, poll: Callable[[], list[Message]]) -> Future[Batch | None]:
        """The next batch, polled for and taken on an intake thread while this one runs."""
        return self._intake.submit(lambda: self.take(poll()))

    def run(self, batch: Batch) -> None:
        """Process one received batch; never raises for a bad message, a bad image or a failed write.

        Images are prepared here while the models run on earlier ones (the batch's `chunks` feed
        them) and earlier ones' writes proceed in the background; the batch's last writes and its
        acknowledgement finish in the background too (at most one earlier batch is still open).
        """
        started, writes = time.monotonic(), []
        for submitted in batch.chunks(self._pipeline):
            writes += self._collect(submitted)
        self.wait()
        self._finishing = self._acker.submit(self._acknowledge_after, writes)
        log.info("batch of %s messages, %s images processed in %.0f ms", len(batch.messages), len(writes),
                 (time.monotonic() - started) * 1000)

    def _collect(self, submitted: Submitted) -> list[Future]:
        """A chunk's outcomes, each queued for storage on the storage threads."""
        chunk, pending = submitted
        try:
            outcomes = self._pipeline.collect(pending) if pending else None
        except Exception:  # noqa: BLE001 - the pipeline answers bad images itself; this is a bug
            log.exception("the pipeline failed a chunk of %s images", len(chunk))
            outcomes = None
        if outcomes is None:
            for job_in_progress in chunk:
                self._ended(job_in_progress, Happened(PIPELINE_FAILED, "the pipeline failed"))
            return []
        self._heartbeat.progress()
        return [self._io.submit(self._step, job_in_progress, self._store, outcome)
                for job_in_progress, outcome in zip(chunk, outcomes)]

    def hand_back(self, batch: Batch) -> None:
        """Give back a batch taken but not run: its results QUEUED again, its messages visible at once.

        Its first chunks may have been prepared already; nothing of them was stored.
        """
        jobs_in_progress = [t for chunk, _ in batch.started for t in chunk] + list(batch.jobs_in_progress())
        for job_in_progress in jobs_in_progress:
            try:
                self._resources.results.requeue(Result.queued(job_in_progress.job).to_dict())
            except ConditionFailed:
                pass  # finished meanwhile by another worker: nothing to undo
            except SightfleetError as exc:
                log.warning("job %s: left PROCESSING until it is taken again (%s)", job_in_progress.job.id, exc)
            job_in_progress.ended = "handed back"
        self._hand_back([t.message for t in jobs_in_progress], 0)   # one call for all, not one per message
        log.info("handed back %s jobs received ahead", len(jobs_in_progress))

    def wait(self) -> None:
        """Until every batch so far is written and acknowledged."""
        finishing, self._finishing = self._finishing, None
        if finishing is not None:
            finishing.result()

    def close(self) -> None:
        """Finish every open batch and stop the background threads."""
        try:
            self._intake.shutdown(wait=True)   # no claim is still under way...
            self.wait()
            self._acknowledge()   # ...so this also sends what claims received ahead republished
        finally:
            for pool in (self._acker, self._intake, self._io):
                pool.shutdown(wait=True)

    # --- the steps of one job's way: each returns None (go on) or what happened where it ends -------

    def _take_in(self, message: Message) -> JobInProgress | None:
        """Claim, then fetch; the job_in_progress when the job goes on to the pipeline, None when its way ended."""
        job_in_progress = JobInProgress(message)
        ok = self._step(job_in_progress, self._claim) and self._stage(job_in_progress, "fetching") and self._step(job_in_progress, self._fetch)
        return job_in_progress if ok and self._stage(job_in_progress, "recognising") else None

    def _stage(self, job_in_progress: JobInProgress, stage: str) -> bool:
        """Tell where the job_in_progress's image is now; True, so that it reads as one more step on the way."""
        if job_in_progress.job is not None:
            self._on_stage(job_in_progress.job.id, stage)
        return True

    def _claim(self, job_in_progress: JobInProgress) -> Happened | None:
        """Parse the job and mark it PROCESSING; a job already final is republished as it stands."""
        job = job_in_progress.job = Job.from_message(job_in_progress.message.body)
        # The receive count is the attempt number, so no read is needed before this write.
        job_in_progress.result = Result.queued(job).processing(self._instance_id, job_in_progress.message.receive_count)
        try:
            self._resources.results.start(job_in_progress.result.to_dict())
        except ConditionFailed:
            current = self._resources.results.get(job.id)
            if owner_of(current) != job.owner:   # the write left another owner's row alone: so does the job
                log.error("message %s names image %s of another owner; not a job: handed back, then the "
                          "dead-letter queue", job_in_progress.message.id, job.id)
                return Happened(NOT_A_JOB, f"job {job.id}: the image belongs to another owner")
            log.info("job %s already %s (redelivery); republishing", job.id, current["status"])
            return Happened(DONE, result=self._standing(job_in_progress, current, job_in_progress.result))
        return None

    def _fetch(self, job_in_progress: JobInProgress) -> Happened | None:
        """Load the image bytes; inline ones are also stored as the original in the input bucket."""
        job, result = job_in_progress.job, job_in_progress.result
        problem = foreign_input(job)
        if problem:
            return Happened(FOREIGN, problem)
        if job.is_inline:
            job_in_progress.data = job.inline_bytes()
            self._resources.inputs.put(result.input_key, job_in_progress.data, job.content_type)
            return None
        try:
            job_in_progress.data = self._resources.inputs.get(job.key)
        except NoSuchObject:   # a missing bucket is out of reach, retried like any storage failure
            return Happened(INPUT_GONE)
        return None

    def _store(self, job_in_progress: JobInProgress, outcome: Outcome) -> Happened:
        """Write the outputs the pipeline made, then the final result."""
        self._stage(job_in_progress, "storing")
        job_in_progress.data, final = None, job_in_progress.result.from_outcome(outcome)
        if final.thumbnail_key:
            self._resources.outputs.put(final.thumbnail_key, outcome.thumbnail, outcome.thumbnail_content_type)
        if final.annotated_key:
            self._resources.outputs.put(final.annotated_key, outcome.annotated, outcome.annotated_content_type)
        return self._finalise(job_in_progress, final)

    def _finalise(self, job_in_progress: JobInProgress, final: Result) -> Happened:
        """Write the result JSON, then the final result once (the first writer wins); what stands is DONE.

        The JSON goes first so that the conditional write after it is also the check that the image
        was not deleted meanwhile (sightfleet/deletion.py).
        """
        try:
            self._published(final.to_dict())
        except SightfleetError as exc:
            if final.status != FAILED:
                raise
            # A failure is recorded even when its JSON cannot be: the row is what users see.
            log.warning("job %s: the JSON of its failure is not stored (%s)", final.id, exc)
        try:
            self._resources.results.finish(final.to_dict())
        except ConditionFailed:
            # Another worker finished first (its result stands, ours is dropped: one result per image),
            # or the image was deleted.
            return Happened(DONE, result=self._standing(job_in_progress, self._resources.results.get(final.id), final))
        except Invalid as exc:
            if final.status == FAILED:
                raise
            return Happened(TOO_LARGE, clip(exc, 200))
        with self._lock:
            self._counters["failed" if final.status == FAILED else "succeeded"] += 1
        log.info("job %s %s top=%s", final.id, final.status, final.top_label)
        if self._index(job_in_progress, final.to_dict()):
            # A delete between the final write and the index writes would miss these entries: look again.
            current = self._resources.results.get(final.id)
            if is_deleted(current):
                purge(self._resources, current, final.to_dict())
        return Happened(DONE, result=final.to_dict())

    def _standing(self, job_in_progress: JobInProgress, current: dict, ours: Result | None = None) -> dict:
        """The stored result that stands, republished and indexed; a deleted image's artefacts purged instead."""
        if not is_deleted(current):
            self._published(current)
            self._index(job_in_progress, current)
            # A delete between the read and the put would miss that JSON: look again after writing it.
            current = self._resources.results.get(current["id"])
        if is_deleted(current):
            log.info("job %s: the image was deleted; removing what it left and dropping the job", current["id"])
            purge(self._resources, current, *([ours.to_dict()] if ours else []))
        return current

    def _index(self, job_in_progress: JobInProgress, result: dict) -> bool:
        """Bring the label index to the stored final result; True when entries were added.

        Final writes come first, so a failure here raises (the job is handed back) and its redelivery,
        finding the result final, indexes it again (every index write is conditional: nothing is counted
        twice). On the last allowed receive the result stands unindexed, said in the log.
        """
        try:
            return bool(labelindex.sync(self._resources.labels, result, self._resources.settings.min_confidence).add)
        except SightfleetError as exc:
            if job_in_progress.message.receive_count < self._resources.settings.max_receive_count:
                raise
            log.error("job %s: its labels are not indexed (%s); reprocess the image to index them", result["id"], exc)
            return False

    def _published(self, result: dict) -> dict:
        """The result JSON written to the output bucket; a redelivery writes the same again."""
        self._resources.outputs.put(result["result_key"], json.dumps(result, indent=1).encode(), "application/json")
        return result

    # --- endings ------------------------------------------------------------------------------------

    def _step(self, job_in_progress: JobInProgress, step: Step, *args) -> bool:
        """Run one step; True when the job goes on, False when its way ended there."""
        return self._ended(job_in_progress, self._attempt(job_in_progress, step, *args))

    def _attempt(self, job_in_progress: JobInProgress, step: Step, *args) -> Happened | None:
        """What the step reported, or the exception it raised sorted into a kind (and logged)."""
        receives = job_in_progress.message.receive_count
        try:
            happened = step(job_in_progress, *args)
        except InvalidJob as exc:
            log.error("message %s is not a job (%s); receive %s of %s, then the dead-letter queue",
                      job_in_progress.message.id, clip(exc, 200), receives, self._resources.settings.max_receive_count)
            happened = Happened(NOT_A_JOB, clip(exc, 200))
        except Invalid as exc:
            happened = Happened(REJECTED, clip(exc, 200))
        except SightfleetError as exc:
            log.warning("job %s: %s (receive %s)", _name(job_in_progress), exc, receives)
            happened = Happened(UNAVAILABLE, clip(exc, 200))
        except Exception as exc:  # noqa: BLE001 - a bug on one job must not take down the worker
            log.exception("job %s: unexpected error in %s", _name(job_in_progress), getattr(step, "__name__", step))
            happened = Happened(UNEXPECTED, f"unexpected {type(exc).__name__}")
        self._heartbeat.progress()
        return happened

    def _ended(self, job_in_progress: JobInProgress, happened: Happened | None) -> bool:
        """False once the job's way ended (its ending applied); True when nothing ended it."""
        while happened is not None:
            decided = ending(happened.kind, job_in_progress.message.receive_count, self._resources.settings.max_receive_count,
                             can_record=job_in_progress.result is not None and not job_in_progress.failing, detail=happened.detail)
            if decided.action != FAIL:
                self._end(job_in_progress, decided, happened.result)
                return False
            job_in_progress.failing = True
            log.warning("job %s failed: %s: %s", _name(job_in_progress), decided.code, decided.reason)
            # Recording the failure is a step of its own: what it reports ends the job (it cannot fail twice).
            happened = self._attempt(job_in_progress, self._finalise, job_in_progress.result.failed(decided.code, decided.reason))
        return True

    def _end(self, job_in_progress: JobInProgress, decided: Ending, result: dict | None) -> None:
        """Apply an ending: acknowledged (queued for the acknowledge thread) or handed back."""
        if job_in_progress.ended:
            log.error("job %s ended twice (%s, then %s)", job_in_progress.message.id, job_in_progress.ended, decided.action)
            return
        if decided.action == ACKNOWLEDGE:
            job_in_progress.ended = "acknowledged"
            with self._lock:
                self._acks.append((job_in_progress, result))
            return
        job_in_progress.ended = "handed back"
        self._hand_back([job_in_progress.message], RETRY_DELAY_S if decided.later else 0)

    def _hand_back(self, messages: list[Message], delay_s: float) -> None:
        """Make messages visible again after delay_s and stop holding them."""
        try:
            self._resources.requests.set_visibility([m.receipt for m in messages], int(delay_s))
        except SightfleetError as exc:
            log.warning("could not hand back %s messages (%s); they reappear when their visibility lapses",
                        len(messages), exc)
        for message in messages:
            self._heartbeat.release(message.receipt)

    def _acknowledge_after(self, writes: list) -> None:
        wait_for_all(writes)  # each store ends its own job; none raises
        try:
            self._acknowledge()
        except Exception:  # noqa: BLE001 - unacknowledged jobs are republished on redelivery
            log.exception("acknowledging a batch failed")

    def _acknowledge(self) -> None:
        """Send the responses, then delete the messages whose response went out; ten per call."""
        with self._lock:
            acks, self._acks = self._acks, []
        if not acks:
            return
        bodies = [response_message(result) for _, result in acks]
        not_sent = set(self._each_or_all(self._resources.responses.send_batch, bodies, range(len(bodies))))
        sent = [job_in_progress.message for i, (job_in_progress, _) in enumerate(acks) if i not in not_sent]
        if not_sent:
            log.warning("%s responses not sent; handing their jobs back to republish", len(not_sent))
            self._hand_back([acks[i][0].message for i in sorted(not_sent)], RETRY_DELAY_S)
        receipts = [m.receipt for m in sent]
        not_deleted = self._each_or_all(self._resources.requests.delete_batch, receipts, receipts)
        if not_deleted:
            log.warning("%s messages not deleted; they reappear and are republished as they stand",
                        len(not_deleted))
        for receipt in receipts:
            self._heartbeat.release(receipt)

    @staticmethod
    def _each_or_all(call: Callable, entries: list, everything) -> list:
        """What a batch call reports as failed; everything when the call itself failed."""
        if not entries:
            return []
        try:
            return list(call(entries))
        except SightfleetError as exc:
            log.warning("batch call failed: %s", exc)
            return list(everything)


def _name(job_in_progress: JobInProgress) -> str:
    """The job's id in log lines; the message's id while it is not yet read as a job."""
    return job_in_progress.job.id if job_in_progress.job else job_in_progress.message.id
