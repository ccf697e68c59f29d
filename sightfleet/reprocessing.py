"""Reprocessing stored photos when the model or the vocabulary changes: each through the fleet again.

One photo: its finished row is put back to QUEUED under a condition on the row as read (status and
updated_at), then a pointer job to its stored original goes on the request queue, like any upload's;
if the send fails, the row is put back as it was. The worker that takes the job writes one result
(replacing the old) and brings the label index to it, so old entries are replaced, not left behind.
Repeating a run, or running two at once, requeues each photo at most once per finished result: the
second conditional write finds the row QUEUED or changed and skips it. Runs go page by page and record
their progress (the cursor included) in the fleet table, so a stopped run resumes where it was.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Callable

from sightfleet.contracts import QUEUED, SUCCEEDED, Job, Result, owner_of, utc_now
from sightfleet.errors import ConditionFailed, SightfleetError, Unavailable

log = logging.getLogger(__name__)
REPROCESS_KIND = "reprocess"   # fleet-table kind of a run's progress record, keyed by run id
PROGRESS_TTL_S = 7 * 86400
VERSION_FIELD = "label_model_version"


def needs_reprocess(doc: dict, older_than: str | None) -> bool:
    """True for a finished photo whose labels older_than (the current version) did not make (None: any photo).

    Versions name their detector, classifier and vocabulary (`ssd...+efficientnet_lite3+vocabulary-1.x`):
    they have no order, so any other version, or none (a result from before versions), counts as older.
    """
    if doc.get("status") != SUCCEEDED:
        return False
    return older_than is None or doc.get(VERSION_FIELD) != older_than


def reprocess_job(doc: dict, input_bucket: str) -> Job:
    """The job that runs a stored photo through the fleet again: a pointer to its original, its upload's filters."""
    return Job(id=doc["id"], album=doc["album"], filename=doc["filename"], content_type=doc["content_type"],
               submitted_at=doc["submitted_at"], size=doc["size"], bucket=input_bucket, key=doc["input_key"],
               owner=owner_of(doc), filters=doc.get("label_filters") or None,
               features=tuple(doc["features"]) if doc.get("features") else None, release=_release_of(doc))


def _release_of(doc: dict) -> dict | None:
    """An admin's release of the photo, which reprocessing keeps; None when it was never released."""
    review = doc.get("review") or {}
    if not review.get("released_by"):
        return None
    return {"released_by": str(review["released_by"]), "released_at": str(review.get("released_at") or "")}


def requeue(resources, doc: dict) -> bool:
    """Put one finished photo back on the queue; False when its row changed meanwhile (someone else did)."""
    job = reprocess_job(doc, resources.inputs.name)
    reopened = {**Result.queued(job).to_dict(), "updated_at": utc_now()}
    try:
        resources.results.replace(reopened, doc["status"], doc["updated_at"])
    except ConditionFailed:
        return False
    try:
        resources.requests.send(job.to_message())
    except SightfleetError as exc:
        try:
            resources.results.replace(doc, QUEUED, reopened["updated_at"])
        except (ConditionFailed, SightfleetError) as undo:
            log.error("reprocessing %s: the job was not sent and the row stays QUEUED (%s)", doc["id"], undo)
        raise Unavailable(f"reprocessing {doc['id']}: the job could not be sent: {exc}") from exc
    return True


@dataclass
class Progress:
    """One run: what it selects, how far it got, and where it goes on from."""

    run: str
    owner: str | None = None
    album: str | None = None
    older_than: str | None = None
    seen: int = 0
    requeued: int = 0
    skipped: int = 0
    cursor: dict | None = None
    done: bool = False
    started_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)

    @classmethod
    def for_selection(cls, owner: str | None, album: str | None, older_than: str | None) -> "Progress":
        """A fresh run; its id is the selection's, so the same selection finds its own record to resume."""
        text = "\0".join(str(v) for v in (owner, album, older_than))
        return cls(run=hashlib.sha256(text.encode()).hexdigest()[:16], owner=owner, album=album,
                   older_than=older_than)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> "Progress":
        """A recorded run (fields this version does not know are dropped)."""
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})


def load_progress(fleet_log, fresh: Progress) -> Progress:
    """The recorded progress of fresh's selection when a run of it is unfinished, else fresh."""
    found = fleet_log.get_many(REPROCESS_KIND, [fresh.run]).get(fresh.run)
    if not found or found.get("done"):
        return fresh
    return Progress.from_dict(found)


def run_page(resources, progress: Progress, page_size: int = 100,
             on_each: Callable[[bool], None] | None = None) -> Progress:
    """Requeue the photos of one page of the selection that need it, and record how far the run got."""
    docs, cursor = resources.results.page(progress.album, SUCCEEDED, page_size, progress.cursor, progress.owner)
    for doc in docs:
        requeued = needs_reprocess(doc, progress.older_than) and requeue(resources, doc)
        progress.requeued += requeued
        progress.skipped += not requeued
        progress.seen += 1
        if on_each is not None:
            on_each(requeued)
    progress.cursor, progress.done, progress.updated_at = cursor, cursor is None, utc_now()
    resources.fleet_log.put(REPROCESS_KIND, progress.run, progress.to_dict(), ttl_s=PROGRESS_TTL_S)
    return progress
