"""One job's way from receive to delete: claim -> fetch -> pipeline -> store -> acknowledge.

Each step hands the job on to the next, or ends its way there in exactly one of three ways:
- acknowledged: its final result is stored; the response is sent and the message deleted;
- handed back: the message is visible again after a delay, for another try here or elsewhere
  (after max_receive_count receives, redrive moves it to the dead-letter queue);
- failed with a code: a FAILED result with the reason is stored, then acknowledged.
A step ends a job by raising one of the End exceptions below, or by raising the project's error of
the call that failed; `BatchRunner._guard` is the one place that turns either into the ending.
Each message's fate is its own: one failed write never holds back the others.

Threads: claims and fetches run on the intake threads; each image is prepared on the worker's
main thread (its per-image time limit needs it) while the models run on earlier ones on the
pipeline's models thread; stores run on the storage threads; responses and deletes go out ten per
call on the acknowledge thread once a batch's stores are done, while the worker polls for more.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_all
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Callable, Iterator

from app_tier.pipeline import ImageInput
from sightfleet import labelindex
from sightfleet.contracts import FAILED, Job, Result, clip, is_deleted, response_message
from sightfleet.deletion import purge
from sightfleet.errors import ConditionFailed, Invalid, InvalidJob, NoSuchObject, SightfleetError
from sightfleet.interfaces import Message
from sightfleet.procs import lower_priority

if TYPE_CHECKING:
    from app_tier.pipeline.pipeline import Pending
    from sightfleet.resources import Resources

log = logging.getLogger(__name__)
RETRY_DELAY_S = 10
IO_THREADS = 2
MISSING_INPUT = "MISSING_INPUT"
STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
STORAGE_REJECTED = "STORAGE_REJECTED"
RESULT_TOO_LARGE = "RESULT_TOO_LARGE"


class End(Exception):
    """Raised by a step to end a job's way there."""


class HandBack(End):
    """Make the message visible again after delay_s, for another try."""

    def __init__(self, delay_s: float, reason: str):
        super().__init__(reason)
        self.delay_s, self.reason = delay_s, reason


class Fail(End):
    """Store a FAILED result with this code and message, then acknowledge."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Acknowledge(End):
    """The job's final result is stored: send the response and delete the message."""

    def __init__(self, result: dict):
        super().__init__(result["status"])
        self.result = result


@dataclass(eq=False)
class Ticket:
    """One received message on its way; `ended` says how the way ended, once it has."""

    message: Message
    job: Job | None = None
    result: Result | None = None
    data: bytes | None = None
    failing: bool = False
    ended: str | None = None


@dataclass
class Intake:
    """Received messages, now held, whose claims and fetches are under way on the intake threads."""

    messages: list[Message]
    claimed: Iterator[Ticket | None]
    # Its first chunks, already submitted to the pipeline while the batch before it finished.
    started: list[tuple[list[Ticket], Pending]] = field(default_factory=list)

    def items(self) -> Iterator[Ticket]:
        """The tickets that passed claim and fetch, not yet taken from `claimed`, as their claims complete."""
        return (ticket for ticket in self.claimed if ticket is not None)


class BatchRunner:
    """Turns received messages into stored results; every write is keyed by image id."""

    def __init__(self, resources: Resources, pipeline, instance_id: str, heartbeat, counters: dict,
                 io_threads: int = IO_THREADS):
        self._r = resources
        self._pipeline = pipeline
        self._instance_id = instance_id
        self._heartbeat = heartbeat
        self._counters = counters
        self._lock = threading.Lock()
        self._acks: list[tuple[Ticket, dict]] = []
        # Storage calls wait on the network; threads overlap them with the models' CPU work.
        # Claims have their own threads so that a batch's first image never queues behind
        # the previous batch's writes.
        self._intake = ThreadPoolExecutor(io_threads, thread_name_prefix="intake", initializer=lower_priority)
        self._io = ThreadPoolExecutor(io_threads, thread_name_prefix="storage", initializer=lower_priority)
        # Acknowledges a batch once its writes are done, while the worker already polls for more.
        self._acker = ThreadPoolExecutor(1, thread_name_prefix="acknowledge", initializer=lower_priority)
        self._finishing = None

    # --- the batch ------------------------------------------------------------------------------

    def take(self, messages: list[Message]) -> Intake | None:
        """Hold the messages (visibility heartbeat) and start claiming and fetching them; None for none."""
        if not messages:
            return None
        self._heartbeat.hold([m.receipt for m in messages])
        return Intake(messages, self._intake.map(self._take_in, messages))

    def run(self, intake: Intake, poll_ahead: Callable[[], list[Message]] | None = None) -> Intake | None:
        """Process one received batch; never raises for a bad message, a bad image or a failed write.

        Images are prepared here while the models run on earlier ones and earlier ones' writes
        proceed in the background; the batch's last writes and its acknowledgement finish in the
        background too (at most one earlier batch is still open). With `poll_ahead`, the next batch
        is received and claimed while this one runs, and its first chunks are submitted before this
        batch's last are collected, so the models go straight on; it is returned for the next call
        (or for `hand_back`, should the worker stop first).
        """
        started, ahead_by = time.monotonic(), self._pipeline.AHEAD
        ahead = self._intake.submit(self._take_ahead, poll_ahead) if poll_ahead else None
        queued, writes = deque(intake.started), []
        for chunk in self._pipeline.chunks(intake.items()):
            queued.append(self._submit(chunk))
            if len(queued) > ahead_by:
                writes += self._collect(queued.popleft())
        following = ahead.result() if ahead else None
        if following:
            following.started = [self._submit(c) for c in islice(self._pipeline.chunks(following.items()), ahead_by)]
        while queued:
            writes += self._collect(queued.popleft())
        self.wait()
        self._finishing = self._acker.submit(self._acknowledge_after, writes)
        log.info("batch of %s messages, %s images processed in %.0f ms", len(intake.messages), len(writes),
                 (time.monotonic() - started) * 1000)
        return following

    def _take_ahead(self, poll: Callable[[], list[Message]]) -> Intake | None:
        return self.take(poll())

    def _submit(self, chunk: list[Ticket]) -> tuple[list[Ticket], Pending | None]:
        """Prepare a chunk of images here and queue its forward passes."""
        try:
            return chunk, self._pipeline.submit([ImageInput(id=t.job.id, data=t.data, filename=t.job.filename)
                                                 for t in chunk])
        except Exception:  # noqa: BLE001 - the pipeline answers bad images itself; this is a bug
            log.exception("the pipeline refused a chunk of %s images", len(chunk))
            return chunk, None

    def _collect(self, submitted: tuple[list[Ticket], Pending | None]) -> list:
        """A chunk's outcomes, each queued for storage on the storage threads."""
        chunk, pending = submitted
        try:
            outcomes = self._pipeline.collect(pending) if pending else None
        except Exception:  # noqa: BLE001 - as in _submit
            log.exception("the pipeline failed a chunk of %s images", len(chunk))
            outcomes = None
        if outcomes is None:
            for ticket in chunk:
                self._end(ticket, HandBack(RETRY_DELAY_S, "the pipeline failed"))
            return []
        self._heartbeat.progress()
        return [self._io.submit(self._guard, ticket, self._store, outcome)
                for ticket, outcome in zip(chunk, outcomes)]

    def hand_back(self, intake: Intake) -> None:
        """Give back a batch taken but not run: its results QUEUED again, its messages visible at once.

        Its first chunks may have been prepared already; nothing of them was stored.
        """
        tickets = [t for chunk, _ in intake.started for t in chunk] + list(intake.items())
        for ticket in tickets:
            try:
                self._r.results.requeue(Result.queued(ticket.job).to_dict())
            except ConditionFailed:
                pass  # finished meanwhile by another worker: nothing to undo
            except SightfleetError as exc:
                log.warning("job %s: left PROCESSING until it is taken again (%s)", ticket.job.id, exc)
            ticket.ended = "handed back"
        self._hand_back([t.message for t in tickets], 0)   # one call for all, not one per message
        log.info("handed back %s jobs received ahead", len(tickets))

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

    # --- the steps of one job's way ---------------------------------------------------------------

    def _take_in(self, message: Message) -> Ticket | None:
        """Claim, then fetch; the ticket when the job goes on to the pipeline, None when its way ended."""
        ticket = Ticket(message)
        ok = self._guard(ticket, self._claim) and self._guard(ticket, self._fetch)
        return ticket if ok else None

    def _claim(self, ticket: Ticket) -> None:
        """Parse the job and mark it PROCESSING; a job already final is republished as it stands."""
        ticket.job = Job.from_message(ticket.message.body)
        # The receive count is the attempt number, so no read is needed before this write.
        ticket.result = Result.queued(ticket.job).processing(self._instance_id, ticket.message.receive_count)
        try:
            self._r.results.start(ticket.result.to_dict())
        except ConditionFailed:
            current = self._r.results.get(ticket.job.id)
            log.info("job %s already %s (redelivery); republishing", ticket.job.id, current["status"])
            raise Acknowledge(self._standing(ticket, current, ticket.result)) from None

    def _fetch(self, ticket: Ticket) -> None:
        """Load the image bytes; inline ones are also stored as the original in the input bucket."""
        job = ticket.job
        if job.is_inline:
            ticket.data = job.inline_bytes()
            self._r.inputs.put(ticket.result.input_key, ticket.data, job.content_type)
            return
        try:
            ticket.data = self._r.inputs.get(job.key)
        except NoSuchObject:   # a missing bucket is out of reach, retried like any storage failure
            raise Fail(MISSING_INPUT, "the uploaded image is no longer stored") from None

    def _store(self, ticket: Ticket, outcome) -> None:
        """Write the outputs the pipeline made, then the final result."""
        ticket.data, final = None, ticket.result.from_outcome(outcome)
        if final.thumbnail_key:
            self._r.outputs.put(final.thumbnail_key, outcome.thumbnail, outcome.thumbnail_content_type)
        if final.annotated_key:
            self._r.outputs.put(final.annotated_key, outcome.annotated, outcome.annotated_content_type)
        self._finalise(ticket, final)

    def _finalise(self, ticket: Ticket, final: Result) -> None:
        """Write the result JSON, then the final result once (the first writer wins); acknowledge what stands.

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
            self._r.results.finish(final.to_dict())
        except ConditionFailed:
            # Another worker finished first (its result stands, ours is dropped: one result per image),
            # or the image was deleted.
            raise Acknowledge(self._standing(ticket, self._r.results.get(final.id), final)) from None
        except Invalid as exc:
            if final.status == FAILED:
                raise
            raise Fail(RESULT_TOO_LARGE, f"the result could not be stored: {clip(exc, 200)}") from None
        with self._lock:
            self._counters["failed" if final.status == FAILED else "succeeded"] += 1
        log.info("job %s %s top=%s", final.id, final.status, final.top_label)
        if self._index(ticket, final.to_dict()):
            # A delete between the final write and the index writes would miss these entries: look again.
            current = self._r.results.get(final.id)
            if is_deleted(current):
                purge(self._r, current, final.to_dict())
        raise Acknowledge(final.to_dict())

    def _standing(self, ticket: Ticket, current: dict, ours: Result | None = None) -> dict:
        """The stored result that stands, republished and indexed; a deleted image's artefacts purged instead."""
        if not is_deleted(current):
            self._published(current)
            self._index(ticket, current)
            # A delete between the read and the put would miss that JSON: look again after writing it.
            current = self._r.results.get(current["id"])
        if is_deleted(current):
            log.info("job %s: the image was deleted; removing what it left and dropping the job", current["id"])
            purge(self._r, current, *([ours.to_dict()] if ours else []))
        return current

    def _index(self, ticket: Ticket, result: dict) -> bool:
        """Bring the label index to the stored final result; True when entries were added.

        Final writes come first, so a failure here hands the job back and its redelivery, finding the
        result final, indexes it again (every index write is conditional: nothing is counted twice).
        """
        try:
            return bool(labelindex.sync(self._r.labels, result, self._r.settings.min_confidence).add)
        except SightfleetError as exc:
            if ticket.message.receive_count >= self._r.settings.max_receive_count:
                log.error("job %s: its labels are not indexed (%s); reprocess the image to index them",
                          result["id"], exc)
                return False
            raise HandBack(RETRY_DELAY_S, f"label index: {clip(exc, 200)}") from None

    def _published(self, result: dict) -> dict:
        """The result JSON written to the output bucket; a redelivery writes the same again."""
        self._r.outputs.put(result["result_key"], json.dumps(result, indent=1).encode(), "application/json")
        return result

    # --- endings ------------------------------------------------------------------------------------

    def _guard(self, ticket: Ticket, step: Callable, *args) -> bool:
        """Run one step; True when the job goes on, False when the step ended its way (see the module doc)."""
        try:
            step(ticket, *args)
            self._heartbeat.progress()
            return True
        except End as end:
            ending = end
        except InvalidJob as exc:
            ending = self._poison(ticket, exc)
        except Invalid as exc:
            ending = Fail(STORAGE_REJECTED, f"storage refused the request: {clip(exc, 200)}")
        except SightfleetError as exc:
            ending = self._retry_or_fail(ticket, exc)
        except Exception as exc:  # noqa: BLE001 - a bug on one job must not take down the worker
            log.exception("job %s: unexpected error in %s", ticket.job.id if ticket.job else ticket.message.id,
                          getattr(step, "__name__", step))
            ending = HandBack(RETRY_DELAY_S, f"unexpected {type(exc).__name__}")
        self._heartbeat.progress()
        self._end(ticket, ending)
        return False

    def _poison(self, ticket: Ticket, exc: InvalidJob) -> HandBack:
        """Not a job we can interpret: hand it back at once so redrive moves it to the dead-letter queue."""
        message = ticket.message
        log.error("message %s is not a job (%s); receive %s of %s, then the dead-letter queue",
                  message.id, clip(exc, 200), message.receive_count, self._r.settings.max_receive_count)
        return HandBack(0, "not a job")

    def _retry_or_fail(self, ticket: Ticket, exc: SightfleetError) -> End:
        """A storage call failed: try again later; on the last allowed receive, record why it failed."""
        receives = ticket.message.receive_count
        log.warning("job %s: %s (receive %s)", ticket.job.id if ticket.job else ticket.message.id, exc, receives)
        if receives >= self._r.settings.max_receive_count:
            return Fail(STORAGE_UNAVAILABLE, f"gave up after {receives} attempts: {clip(exc, 200)}")
        return HandBack(RETRY_DELAY_S, str(exc))

    def _end(self, ticket: Ticket, end: End) -> None:
        """End a job's way: exactly one of acknowledged, handed back, or failed (stored, then acknowledged)."""
        if ticket.ended:
            log.error("job %s ended twice (%s, then %s)", ticket.message.id, ticket.ended, end)
            return
        if isinstance(end, Fail):
            if ticket.result is None or ticket.failing:
                end = HandBack(RETRY_DELAY_S, f"could not record the failure ({end})")
            else:
                ticket.failing = True
                log.warning("job %s failed: %s", ticket.job.id, end)
                self._guard(ticket, self._finalise, ticket.result.failed(end.code, end.message))
                return
        if isinstance(end, Acknowledge):
            ticket.ended = "acknowledged"
            with self._lock:
                self._acks.append((ticket, end.result))
            return
        ticket.ended = "handed back"
        self._hand_back([ticket.message], end.delay_s)

    def _hand_back(self, messages: list[Message], delay_s: float) -> None:
        """Make messages visible again after delay_s and stop holding them."""
        try:
            self._r.requests.set_visibility([m.receipt for m in messages], int(delay_s))
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
        not_sent = set(self._each_or_all(self._r.responses.send_batch, bodies, range(len(bodies))))
        sent = [ticket.message for i, (ticket, _) in enumerate(acks) if i not in not_sent]
        if not_sent:
            log.warning("%s responses not sent; handing their jobs back to republish", len(not_sent))
            self._hand_back([acks[i][0].message for i in sorted(not_sent)], RETRY_DELAY_S)
        receipts = [m.receipt for m in sent]
        not_deleted = self._each_or_all(self._r.requests.delete_batch, receipts, receipts)
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
