"""One batch of received messages: fetch the images, run the pipeline, store every output, acknowledge."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Callable, Iterator

from app_tier.pipeline import ImageInput
from sightfleet.aws.sqs import Message
from sightfleet.contracts import (
    FAILED, PROCESSING, Job, failed_result, input_key, output_keys, queued_result,
    response_message, thumbnail_key, utc_now,
)
from sightfleet.errors import ConditionFailed, InvalidJob, NotFound, SightfleetError
from sightfleet.procs import lower_priority

if TYPE_CHECKING:
    from app_tier.pipeline.pipeline import Pending

log = logging.getLogger(__name__)
RETRY_DELAY_S = 10
IO_THREADS = 2


@dataclass
class Claimed:
    """A message whose job this worker is now processing."""

    message: Message
    job: Job
    result: dict
    data: bytes | None = None


@dataclass
class Intake:
    """Received messages, now held, whose claims and fetches are under way on the intake threads."""

    messages: list[Message]
    claimed: Iterator[Claimed | None]
    # Its first chunks, already submitted to the pipeline while the batch before it finished.
    started: list[tuple[list[Claimed], Pending]] = field(default_factory=list)

    def items(self) -> Iterator[Claimed]:
        """The claimed items not yet taken from `claimed`, in order, as their claims complete."""
        return (item for item in self.claimed if item is not None)


class BatchRunner:
    """Turns received messages into stored results; every write is keyed by image id."""

    def __init__(self, resources, pipeline, instance_id: str, heartbeat, counters: dict,
                 io_threads: int = IO_THREADS):
        self._r = resources
        self._pipeline = pipeline
        self._instance_id = instance_id
        self._heartbeat = heartbeat
        self._counters = counters
        self._lock = threading.Lock()
        self._acks: list[tuple[Message, str]] = []
        # Storage calls wait on the network; threads overlap them with the models' CPU work.
        # Claims have their own threads so that a batch's first image never queues behind
        # the previous batch's writes.
        self._intake = ThreadPoolExecutor(io_threads, thread_name_prefix="intake", initializer=lower_priority)
        self._io = ThreadPoolExecutor(io_threads, thread_name_prefix="storage", initializer=lower_priority)
        # Acknowledges a batch once its writes are done, while the worker already polls for more.
        self._acker = ThreadPoolExecutor(1, thread_name_prefix="acknowledge", initializer=lower_priority)
        self._finishing = None

    def take(self, messages: list[Message]) -> Intake | None:
        """Hold the messages (visibility heartbeat) and start claiming and fetching them; None for none."""
        if not messages:
            return None
        self._heartbeat.hold([m.receipt for m in messages])
        return Intake(messages, self._intake.map(self._claim_and_fetch, messages))

    def run(self, intake: Intake, poll_ahead: Callable[[], list[Message]] | None = None) -> Intake | None:
        """Process one received batch; never raises for a bad image or a single failed write.

        Claims and fetches run on the intake threads and are taken in order as they finish;
        each image is prepared here, in the main thread (the per-image time limit needs it),
        while the models run on earlier images and earlier images' writes proceed in the background.
        The batch's last writes and its acknowledgement finish in the background too, so the
        worker can poll for the next batch at once; at most one earlier batch is still open.
        With `poll_ahead`, the next batch is received and claimed while this one runs, and its
        first chunks are submitted before this batch's last are collected, so the models go
        straight on; it is returned for the next call (or for `hand_back`, should the worker
        stop first).
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

    def _submit(self, chunk: list[Claimed]) -> tuple[list[Claimed], Pending]:
        """Prepare a chunk of claimed images here and queue its forward passes."""
        return chunk, self._pipeline.submit([ImageInput(id=item.job.id, data=item.data, filename=item.job.filename)
                                             for item in chunk])

    def _collect(self, submitted: tuple[list[Claimed], Pending]) -> list:
        """A chunk's outcomes, each queued for storage on the storage threads."""
        chunk, pending = submitted
        return [self._io.submit(self._store, item, outcome)
                for item, outcome in zip(chunk, self._pipeline.collect(pending))]

    def _take_ahead(self, poll: Callable[[], list[Message]]) -> Intake | None:
        return self.take(poll())

    def hand_back(self, intake: Intake) -> None:
        """Give back a batch taken but not run: its results QUEUED again, its messages visible at once.

        Its first chunks may have been prepared already; nothing of them was stored.
        """
        claimed = [item for chunk, _ in intake.started for item in chunk] + list(intake.items())
        for item in claimed:
            try:
                self._r.results.requeue(queued_result(item.job))
            except ConditionFailed:
                pass  # finished meanwhile by another worker: nothing to undo
            except SightfleetError as exc:
                log.warning("job %s: left PROCESSING until it is taken again (%s)", item.job.id, exc)
        self._give_back([item.message for item in claimed], 0)
        log.info("handed back %s jobs received ahead", len(claimed))

    def wait(self) -> None:
        """Until every batch so far is written and acknowledged."""
        if self._finishing is not None:
            self._finishing.result()
            self._finishing = None

    def _acknowledge_after(self, writes: list) -> None:
        for write in writes:
            write.result()
        self._acknowledge()

    def close(self) -> None:
        """Finish every open batch and stop the background threads."""
        self.wait()
        self._acker.shutdown(wait=True)
        self._intake.shutdown(wait=True)
        self._io.shutdown(wait=True)

    def _claim_and_fetch(self, message: Message) -> Claimed | None:
        item = self._claim(message)
        return item if item is not None and self._fetch(item) else None

    def _claim(self, message: Message) -> Claimed | None:
        """Parse the job and mark it PROCESSING, or republish a job that is already done."""
        try:
            job = Job.from_message(message.body)
        except InvalidJob as exc:
            # Not ours to interpret: hand it back so redrive moves it to the dead-letter queue.
            log.error("message %s is not a job (%s); leaving it for the dead-letter queue", message.id, exc)
            self._give_back([message], 0)
            return None
        result = queued_result(job)
        now = utc_now()
        # The receive count is the attempt number, so no read is needed before this write.
        result.update(status=PROCESSING, started_at=now, updated_at=now, instance_id=self._instance_id,
                      attempts=message.receive_count)
        try:
            self._r.results.start(result)
        except ConditionFailed:
            self._republish(message, job)
            return None
        except SightfleetError as exc:
            log.warning("job %s: cannot mark PROCESSING (%s); retrying later", job.id, exc)
            self._give_back([message], RETRY_DELAY_S)
            return None
        return Claimed(message, job, result)

    def _republish(self, message: Message, job: Job) -> None:
        """A redelivered job that already has its final result: publish that result again."""
        try:
            current = self._r.results.get(job.id)
        except SightfleetError as exc:
            log.warning("job %s: cannot read its final result (%s); retrying later", job.id, exc)
            self._give_back([message], RETRY_DELAY_S)
            return
        log.info("job %s already %s (redelivery); republishing", job.id, current["status"])
        self._publish(message, current)

    def _fetch(self, item: Claimed) -> bool:
        """Load the image bytes; inline ones are also stored as the original in the input bucket."""
        job = item.job
        try:
            if job.is_inline:
                item.data = job.inline_bytes()
                self._r.inputs.put(input_key(job.id, job.content_type), item.data, job.content_type)
            else:
                item.data = self._r.inputs.get(job.key)
            return True
        except NotFound:
            self._finish(item, failed_result(item.result, "MISSING_INPUT", "the uploaded image is no longer stored"))
        except SightfleetError as exc:
            log.warning("job %s: cannot fetch or store the original (%s)", job.id, exc)
            self._give_back_or_fail(item, str(exc))
        return False

    def _store(self, item: Claimed, outcome) -> None:
        """Write artefacts, then the final result, then the response; only then acknowledge."""
        keys = output_keys(item.job.id)
        result = dict(item.result)
        result.update(outcome.to_result_fields())
        try:
            if outcome.thumbnail:
                result["thumbnail_key"] = thumbnail_key(item.job.id, outcome.thumbnail_content_type)
                self._r.outputs.put(result["thumbnail_key"], outcome.thumbnail, outcome.thumbnail_content_type)
            if outcome.annotated:
                result["annotated_key"] = keys["annotated"]
                self._r.outputs.put(keys["annotated"], outcome.annotated, outcome.annotated_content_type)
        except SightfleetError as exc:
            log.warning("job %s: cannot store outputs (%s)", item.job.id, exc)
            self._give_back_or_fail(item, str(exc))
            return
        self._finish(item, result)

    def _finish(self, item: Claimed, result: dict) -> None:
        now = utc_now()
        result.update(completed_at=now, updated_at=now, result_key=output_keys(item.job.id)["result"])
        try:
            self._r.results.finish(result)
        except ConditionFailed:
            # Another worker finished first: its result stands, ours is dropped (one result per image).
            result = self._r.results.get(item.job.id)
        except SightfleetError as exc:
            log.warning("job %s: cannot write result (%s); retrying later", item.job.id, exc)
            self._give_back([item.message], RETRY_DELAY_S)
            return
        with self._lock:
            self._counters["failed" if result["status"] == FAILED else "succeeded"] += 1
        log.info("job %s %s top=%s", item.job.id, result["status"], result.get("top_label"))
        self._publish(item.message, result)

    def _publish(self, message: Message, result: dict) -> None:
        """Result JSON from the stored result now; response and delete go out batched after the run."""
        try:
            self._r.outputs.put(output_keys(result["id"])["result"],
                                json.dumps(result, indent=1).encode(), "application/json")
        except SightfleetError as exc:
            # The result is already final; a redelivery republishes it from the table.
            log.warning("job %s: result JSON not written (%s); will republish on redelivery", result["id"], exc)
            return
        with self._lock:
            self._acks.append((message, response_message(result)))

    def _acknowledge(self) -> None:
        """Send the responses, then delete the job messages, ten per call."""
        with self._lock:
            acks, self._acks = self._acks, []
        if not acks:
            return
        try:
            self._r.responses.send_batch([body for _, body in acks])
            self._r.requests.delete_batch([message.receipt for message, _ in acks])
        except SightfleetError as exc:
            log.warning("%s results not acknowledged (%s); redelivery will republish them", len(acks), exc)
        for message, _ in acks:
            self._heartbeat.release(message.receipt)

    def _give_back_or_fail(self, item: Claimed, reason: str) -> None:
        """Retry a storage failure; on the last allowed receive, record why it failed."""
        if item.message.receive_count >= self._r.settings.max_receive_count:
            self._finish(item, failed_result(
                item.result, "STORAGE_UNAVAILABLE", f"gave up after {item.message.receive_count} attempts: {reason}"))
        else:
            self._give_back([item.message], RETRY_DELAY_S)

    def _give_back(self, messages: list[Message], delay_s: int) -> None:
        """Make messages visible again after delay_s (one call for all) and stop holding them."""
        if not messages:
            return
        try:
            self._r.requests.set_visibility([m.receipt for m in messages], delay_s)
        except SightfleetError as exc:
            log.warning("could not hand back %s messages: %s", len(messages), exc)
        for message in messages:
            self._heartbeat.release(message.receipt)
