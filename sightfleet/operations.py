"""Operator actions on a stack's work: retry failed photos, redrive the dead-letter queue, purge a queue.

Used alike by the web tier's /api/ops routes and `python -m controller ops`; each returns a report
(how many were acted on, skipped, left) and writes one audit record (sightfleet/control.py).
Long work reports progress through an optional callback (one call per item done).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from sightfleet.contracts import FAILED, FINAL_STATUSES, Job, Result, clip, epoch, failed_result, job_id_of
from sightfleet.control import Control
from sightfleet.errors import ConditionFailed, InvalidJob, NoSuchResult, SightfleetError

log = logging.getLogger(__name__)
PURGED = "PURGED"
MAX_RETRY = 5000
MAX_MOVE = 10000
PAGE = 100
# Dead letters a redrive or purge holds while it moves them: long enough for one batch.
HOLD_S = 60
# Codes the dead-letter sweep writes (controller/dead_letters.py): a redriven job sheds them.
DEAD_LETTER_CODES = ("PROCESSING_FAILED", "INVALID_JOB")
QUEUES = ("requests", "dead_letters")
# How long a redrive waits for dead letters the controller's sweep hides, in controller ticks.
RELEASE_WAIT_TICKS = 3
RELEASE_POLL_S = 0.5
Progress = Callable[[int], None]


@dataclass(frozen=True)
class RetryFilter:
    """Which FAILED photos a retry takes: by error code, owner, album and submission time (ISO, inclusive)."""

    code: str | None = None
    owner: str | None = None
    album: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = MAX_RETRY

    def matches(self, row: dict) -> bool:
        code = (row.get("error") or {}).get("code")
        submitted = epoch(row.get("submitted_at")) or 0.0
        return ((self.code is None or code == self.code)
                and (self.since is None or submitted >= (epoch(self.since) or 0.0))
                and (self.until is None or submitted <= (epoch(self.until) or 0.0)))


@dataclass
class Report:
    """What one action did: counts by outcome, and what is left where that applies."""

    action: str
    done: int = 0
    skipped: dict = field(default_factory=dict)
    left: dict | None = None
    ids: list = field(default_factory=list)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def to_dict(self) -> dict:
        doc = {"action": self.action, "done": self.done, "skipped": self.skipped, "ids": self.ids[:100]}
        if self.left is not None:
            doc["left"] = self.left
        return doc


def _failed_rows(resources, flt: RetryFilter):
    """FAILED rows that match the filter, newest first, at most flt.limit."""
    cursor, found = None, 0
    while found < flt.limit:
        rows, cursor = resources.results.page(album=flt.album, status=FAILED, limit=PAGE, cursor=cursor,
                                              owner=flt.owner)
        for row in rows:
            if flt.matches(row) and found < flt.limit:
                found += 1
                yield row
        if cursor is None:
            return


def job_of(row: dict, input_bucket: str) -> Job:
    """The job that processes a stored row's original again (always by claim check: the original is stored)."""
    return Job(id=row["id"], album=row["album"], filename=row["filename"], content_type=row["content_type"],
               submitted_at=row["submitted_at"], size=int(row.get("size") or 0), bucket=input_bucket,
               key=row["input_key"], owner=Result.from_dict(row).owner)


def _out_of_time(budget_s: float | None, started: float) -> bool:
    return budget_s is not None and time.monotonic() - started >= budget_s


def retry(resources, flt: RetryFilter, who: str, progress: Progress | None = None,
          budget_s: float | None = None) -> Report:
    """Re-enqueue matching FAILED photos whose original is still stored; each at most once per FAILED state."""
    report, started = Report("retry"), time.monotonic()
    for row in _failed_rows(resources, flt):
        if _out_of_time(budget_s, started):
            report.left = {"unfinished": "out of time: send the retry again for the rest"}
            break
        _retry_one(resources, row, report)
        if progress:
            progress(1)
    Control(resources.fleet_log).audit(who, "retry", report.done, {"filter": _present(flt), "skipped": report.skipped})
    return report


def _retry_one(resources, row: dict, report: Report) -> None:
    if not row.get("input_key") or not resources.inputs.exists(row["input_key"]):
        report.skip("original not stored")
        return
    job = job_of(row, resources.inputs.name)
    try:
        resources.results.replace(Result.queued(job).to_dict(), FAILED, row["updated_at"])
    except ConditionFailed:
        report.skip("no longer FAILED (retried or deleted meanwhile)")
        return
    try:
        resources.requests.send(job.to_message())
    except SightfleetError as exc:
        log.warning("retry of %s not sent (%s); its FAILED result is put back", job.id, exc)
        _restore(resources, row)
        report.skip("could not be sent")
        return
    report.done += 1
    report.ids.append(job.id)


def _restore(resources, row: dict) -> None:
    try:
        resources.results.finish(row)
    except SightfleetError as exc:
        log.error("photo %s left QUEUED with no message (%s): retry it again", row["id"], exc)


def redrive(resources, who: str, rate_per_s: float = 10.0, limit: int = MAX_MOVE,
            progress: Progress | None = None, budget_s: float | None = None) -> Report:
    """Move dead letters back to the request queue, at most rate_per_s a second; jobs the sweep failed reopen."""
    report = Report("redrive")
    started = time.monotonic()
    Control(resources.fleet_log).request_dead_letters()
    # The controller's sweep hides each dead letter for minutes; it shows them at its next tick.
    patience = started + RELEASE_WAIT_TICKS * resources.settings.controller_tick_s
    while report.done < limit and not _out_of_time(budget_s, started):
        messages = resources.dead_letters.receive(min(10, limit - report.done), 0, visibility_s=HOLD_S)
        if not messages:
            if time.monotonic() < patience and resources.dead_letters.counts()["in_flight"]:
                time.sleep(RELEASE_POLL_S)
                continue
            break
        for message in messages:
            _reopen_dead(resources, message.body)
        not_sent = set(resources.requests.send_batch([m.body for m in messages]))
        sent = [m for i, m in enumerate(messages) if i not in not_sent]
        resources.dead_letters.delete_batch([m.receipt for m in sent])
        report.done += len(sent)
        if not_sent:
            report.skipped["could not be sent"] = report.skipped.get("could not be sent", 0) + len(not_sent)
            break
        if progress:
            progress(len(sent))
        # The chosen rate: never ahead of done / rate seconds since the start.
        time.sleep(max(0.0, report.done / rate_per_s - (time.monotonic() - started)))
    report.left = resources.dead_letters.counts()
    Control(resources.fleet_log).audit(who, "redrive", report.done, {"rate_per_s": rate_per_s, "left": report.left})
    return report


def _reopen_dead(resources, body: str) -> None:
    """A redriven job whose row the dead-letter sweep marked FAILED is QUEUED again, so a worker may take it."""
    try:
        job = Job.from_message(body)
        row = resources.results.get(job.id)
    except (InvalidJob, NoSuchResult):
        return   # poison, or no row yet: the worker writes what is needed
    code = (row.get("error") or {}).get("code")
    if row.get("status") == FAILED and code in DEAD_LETTER_CODES:
        try:
            resources.results.replace(Result.queued(job).to_dict(), FAILED, row["updated_at"])
        except ConditionFailed:
            pass


def purge(resources, queue: str, who: str, progress: Progress | None = None,
          budget_s: float | None = None) -> Report:
    """Empty the request or dead-letter queue; every photo it held that is not final is marked FAILED (PURGED)."""
    source = resources.requests if queue == "requests" else resources.dead_letters
    report, started = Report(f"purge {queue}"), time.monotonic()
    while not _out_of_time(budget_s, started):
        messages = source.receive(10, 0, visibility_s=HOLD_S)
        if not messages:
            break
        for message in messages:
            _mark_purged(resources, message.body, queue, report)
        source.delete_batch([m.receipt for m in messages])
        report.done += len(messages)
        if progress:
            progress(len(messages))
    report.left = source.counts()
    Control(resources.fleet_log).audit(who, f"purge {queue}", report.done, {"left": report.left})
    return report


def _mark_purged(resources, body: str, queue: str, report: Report) -> None:
    image_id = job_id_of(body)
    if image_id is None:
        report.skip("not a job")
        return
    reason = f"an operator emptied the {queue.replace('_', '-')} queue before this photo was processed"
    try:
        row = resources.results.get(image_id)
    except NoSuchResult:
        _create_failed(resources, body, reason, report)
        return
    if row.get("status") in FINAL_STATUSES:
        report.skip("already final")
        return
    try:
        resources.results.finish(failed_result(row, PURGED, reason))
        report.ids.append(image_id)
    except ConditionFailed:
        report.skip("finished meanwhile")


def _create_failed(resources, body: str, reason: str, report: Report) -> None:
    try:
        job = Job.from_message(body)
        resources.results.create(Result.queued(job).failed(PURGED, reason).to_dict())
        report.ids.append(job.id)
    except (InvalidJob, ConditionFailed) as exc:
        report.skip(f"no row written ({clip(type(exc).__name__, 40)})")


def _present(flt: RetryFilter) -> dict:
    return {k: v for k, v in vars(flt).items() if v is not None and k != "limit"}
