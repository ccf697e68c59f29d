"""Moderation's hold, and an admin's release: what the web tier's review list and release action share.

In `hold` mode (Settings.moderation) the worker stores a flagged photo with review {"flagged": true,
"held": true}; the label index then holds nothing of it but its review terms (sightfleet/labelindex.py),
so it is in no gallery, album, search or count. An admin's release marks the row released (held false,
who and when) under a condition on the row as read, then indexes the photo as any finished one.
Releasing a released photo again only indexes it again (a release cut short by a failed index write is
finished that way).
"""
from __future__ import annotations

import logging

from sightfleet import labelindex
from sightfleet.contracts import SUCCEEDED, is_deleted, utc_now
from sightfleet.errors import NoSuchResult, SightfleetError
from sightfleet.findterms import REVIEW, REVIEW_OWNER, is_held, term_key

log = logging.getLogger(__name__)
REVIEW_KEY = term_key(REVIEW)   # the admins' list: every held photo, under REVIEW_OWNER


class NotHeld(SightfleetError):
    """The photo is not held (never was, or it failed): there is nothing to release."""


def released(doc: dict, admin: str, now: str) -> dict:
    """The row as a release by admin at now leaves it (pure)."""
    review = {**(doc.get("review") or {}), "held": False, "released_by": admin, "released_at": now}
    return {**doc, "review": review, "updated_at": now}


def was_released(doc: dict) -> bool:
    review = doc.get("review")
    return isinstance(review, dict) and review.get("held") is False and bool(review.get("released_by"))


def release(resources, image_id: str, admin: str) -> dict:
    """Release one held photo and index it; the row as it now stands.

    NoSuchResult for a missing or deleted photo, NotHeld for one that is not held, ConditionFailed when
    the row changed between the read and the write (a reprocess, a delete): read again and decide again.
    """
    doc = resources.results.get(image_id)
    if is_deleted(doc):
        raise NoSuchResult("no such image")
    if doc.get("status") != SUCCEEDED or not (is_held(doc) or was_released(doc)):
        raise NotHeld(f"image {image_id} is not held for review")
    if is_held(doc):
        doc_now = released(doc, admin, utc_now())
        resources.results.replace(doc_now, doc["status"], doc["updated_at"])
        log.info("%s released image %s of %s", admin, image_id, doc.get("owner"))
        doc = doc_now
    labelindex.sync(resources.labels, doc, resources.settings.min_confidence)
    return doc


def held_page(labels, limit: int, start: dict | None = None) -> tuple[list, dict | None]:
    """Index entries of every owner's held photos, newest first, and the key to go on from."""
    return labels.search(REVIEW_OWNER, REVIEW_KEY, None, 0.0, limit, start)


def waiting_count(labels) -> int:
    """How many photos wait for an admin's review."""
    return labels.term_count(REVIEW_OWNER, REVIEW_KEY)
