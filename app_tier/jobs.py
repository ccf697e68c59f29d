"""One batch of received messages: fetch the images, run the pipeline, store every output, acknowledge."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from app_tier.pipeline import ImageInput
from sightfleet.aws.sqs import Message
from sightfleet.contracts import (
    FAILED, FINAL_STATUSES, PROCESSING, Job, failed_result, input_key, output_keys, queued_result,
    response_message, utc_now,
)
from sightfleet.errors import ConditionFailed, InvalidJob, NotFound, SightfleetError

log = logging.getLogger(__name__)
RETRY_DELAY_S = 10


@dataclass
class Claimed:
    """A message whose job this worker is now processing."""

    message: Message
    job: Job
    result: dict
    data: bytes | None = None


class BatchRunner:
    """Turns received messages into stored results; every write is keyed by image id."""

    def __init__(self, resources, pipeline, instance_id: str, heartbeat, counters: dict):
        self._r = resources
        self._pipeline = pipeline
        self._instance_id = instance_id
        self._heartbeat = heartbeat
        self._counters = counters

    def run(self, messages: list[Message]) -> None:
        """Process one received batch; never raises for a bad image or a single failed write."""
        self._heartbeat.hold([m.receipt for m in messages])
        claimed = [c for c in (self._claim(m) for m in messages) if c is not None]
        claimed = [c for c in claimed if self._fetch(c)]
        if not claimed:
            return
        self._heartbeat.beat()
        started = time.monotonic()
        outcomes = self._pipeline.process([self._image_input(c) for c in claimed])
        log.info("pipeline ran %s images in %.0f ms", len(claimed), (time.monotonic() - started) * 1000)
        for item, outcome in zip(claimed, outcomes):
            self._store(item, outcome)

    def _claim(self, message: Message) -> Claimed | None:
        """Parse the job and mark it PROCESSING, or finish off a job that is already done."""
        try:
            job = Job.from_message(message.body)
        except InvalidJob as exc:
            # Not ours to interpret: hand it back so redrive moves it to the dead-letter queue.
            log.error("message %s is not a job (%s); leaving it for the dead-letter queue", message.id, exc)
            self._give_back(message, 0)
            return None
        try:
            current = self._r.results.get(job.id)
        except NotFound:
            current = None
        except SightfleetError as exc:
            log.warning("job %s: results table unavailable (%s); retrying later", job.id, exc)
            self._give_back(message, RETRY_DELAY_S)
            return None
        if current and current["status"] in FINAL_STATUSES:
            log.info("job %s already %s (redelivery); republishing", job.id, current["status"])
            self._publish(message, current)
            return None
        return self._start(message, job, current)

    def _start(self, message: Message, job: Job, current: dict | None) -> Claimed | None:
        result = dict(current or queued_result(job))
        now = utc_now()
        result.update(status=PROCESSING, started_at=now, updated_at=now, instance_id=self._instance_id,
                      attempts=int(result.get("attempts") or 0) + 1)
        try:
            self._r.results.start(result)
        except ConditionFailed:
            log.info("job %s finished elsewhere meanwhile; republishing", job.id)
            self._publish(message, self._r.results.get(job.id))
            return None
        except SightfleetError as exc:
            log.warning("job %s: cannot mark PROCESSING (%s); retrying later", job.id, exc)
            self._give_back(message, RETRY_DELAY_S)
            return None
        return Claimed(message, job, result)

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

    def _image_input(self, item: Claimed) -> ImageInput:
        return ImageInput(id=item.job.id, data=item.data, filename=item.job.filename)

    def _store(self, item: Claimed, outcome) -> None:
        """Write artefacts, then the final result, then the response; only then acknowledge."""
        keys = output_keys(item.job.id)
        result = dict(item.result)
        result.update(outcome.to_result_fields())
        try:
            if outcome.thumbnail:
                ext = "png" if outcome.thumbnail_content_type == "image/png" else "jpg"
                result["thumbnail_key"] = f"{keys['thumbnail']}.{ext}"
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
            self._give_back(item.message, RETRY_DELAY_S)
            return
        self._counters["failed" if result["status"] == FAILED else "succeeded"] += 1
        log.info("job %s %s top=%s", item.job.id, result["status"], result.get("top_label"))
        self._publish(item.message, result)

    def _publish(self, message: Message, result: dict) -> None:
        """Result JSON and response message from the stored result, then delete the job message."""
        try:
            self._r.outputs.put(output_keys(result["id"])["result"],
                                json.dumps(result, indent=1).encode(), "application/json")
            self._r.responses.send(response_message(result))
            self._r.requests.delete(message.receipt)
            self._heartbeat.release(message.receipt)
        except SightfleetError as exc:
            # The result is already final; a redelivery republishes it from the table.
            log.warning("job %s: publish incomplete (%s); will republish on redelivery", result["id"], exc)

    def _give_back_or_fail(self, item: Claimed, reason: str) -> None:
        """Retry a storage failure; on the last allowed receive, record why it failed."""
        if item.message.receive_count >= self._r.settings.max_receive_count:
            self._finish(item, failed_result(
                item.result, "STORAGE_UNAVAILABLE", f"gave up after {item.message.receive_count} attempts: {reason}"))
        else:
            self._give_back(item.message, RETRY_DELAY_S)

    def _give_back(self, message: Message, delay_s: int) -> None:
        try:
            self._r.requests.set_visibility([message.receipt], delay_s)
        except SightfleetError as exc:
            log.warning("could not hand back message %s: %s", message.id, exc)
        self._heartbeat.release(message.receipt)
