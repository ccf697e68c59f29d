"""Deleting an image: a tombstone first, then every artefact; the worker honours the tombstone.

Order, and why: the row becomes a tombstone before any object goes, so from the first step on
every route answers 404 and every later worker write of the image is refused by the results
table's condition (start, finish and requeue only overwrite QUEUED or PROCESSING rows). Then the
objects go. A failure part-way leaves the tombstone, which names every key, so a retried delete
finishes the job; deleting objects that are gone already succeeds. The tombstone expires after
TOMBSTONE_TTL_S, once no job message of the image can still arrive (a row simply removed would let
a redelivered job write the image back).

A worker that finds the tombstone (its claim or its final write refused) purges whatever it may
have written and drops the job; as it writes its artefacts before that conditional write, either
the delete's purge or the worker's own removes every one of them.
"""
from __future__ import annotations

import logging
from typing import Callable

from sightfleet.contracts import artefact_keys, is_deleted, response_message, tombstone
from sightfleet.errors import NoSuchResult, SightfleetError
from sightfleet.labelindex import remove_all

log = logging.getLogger(__name__)


def delete_image(resources, doc: dict, on_tombstoned: Callable[[], None] | None = None) -> None:
    """Bury the image's row (unless it is a tombstone already), then purge its artefacts; idempotent.

    on_tombstoned runs once per image, right after the one write that turned its row into a tombstone
    (never for a retry or for the loser of two racing deletes) and before any object goes, so what
    counts images (the owner's quota) counts each deletion exactly once even when the purge then
    fails. Raises the project's error of the first call that failed; a retry completes what is left.
    """
    tombstone_row = doc if is_deleted(doc) else tombstone(doc)
    if tombstone_row is not doc and resources.results.replace_with_tombstone(tombstone_row) and on_tombstoned is not None:
        on_tombstoned()
    # Said on every run while the tombstone stands, a retried delete's too, and a failed send fails the delete
    # (to be run again): webhooks hear of it at least once (as the same delivery, so receivers drop repeats).
    resources.responses.send(response_message(tombstone_row))
    purge(resources, tombstone_row, doc)
    log.info("deleted image %s of %s", doc["id"], tombstone_row["owner"])


def delete_owner_images(resources, owner: str, on_each: Callable[[], None] | None = None,
                        on_tombstoned: Callable[[], None] | None = None,
                        page_size: int = 100) -> list[tuple[str, Exception]]:
    """Delete every image of one owner, page by page; the images whose deletion failed, with why.

    One failure does not stop the others. A failed image may be tombstoned already (a tombstone, which no
    listing shows, names what is left): the caller keeps the failed ids to finish them by id
    (delete_images_by_id). on_tombstoned: as delete_image's, once per image tombstoned here.
    """
    failed: list[tuple[str, Exception]] = []
    cursor = None
    while True:
        docs, cursor = resources.results.page(owner=owner, limit=page_size, cursor=cursor)
        failed += _delete_each(resources, docs, on_each, on_tombstoned)
        if cursor is None:
            break
    if not failed:   # each image's delete uncounted its labels; what stays are the owner's emptied counts
        resources.labels.forget_owner(owner)
    return failed


def delete_images_by_id(resources, image_ids: list[str], on_tombstoned: Callable[[], None] | None = None
                        ) -> list[tuple[str, Exception]]:
    """Finish deleting images known by id (tombstones included; an id whose row is gone is done)."""
    docs, failed = [], []
    for image_id in image_ids:
        try:
            docs.append(resources.results.get(image_id))
        except NoSuchResult:
            continue
        except SightfleetError as exc:
            failed.append((image_id, exc))
    return failed + _delete_each(resources, docs, None, on_tombstoned)


def _delete_each(resources, docs: list[dict], on_each, on_tombstoned) -> list[tuple[str, Exception]]:
    failed: list[tuple[str, Exception]] = []
    for doc in docs:
        try:
            delete_image(resources, doc, on_tombstoned)
        except SightfleetError as exc:
            log.warning("deleting image %s of %s failed: %s", doc["id"], doc.get("owner"), exc)
            failed.append((doc["id"], exc))
        if on_each is not None:
            on_each()
    return failed


def purge(resources, *docs: dict) -> None:
    """Delete every object these documents of one image name or may have, and its label index entries
    (a missing object or entry is no error)."""
    inputs: dict[str, None] = {}
    outputs: dict[str, None] = {}
    for doc in docs:
        found_in, found_out = artefact_keys(doc)
        inputs.update(dict.fromkeys(found_in))
        outputs.update(dict.fromkeys(found_out))
    for key in inputs:
        resources.inputs.delete(key)
    for key in outputs:
        resources.outputs.delete(key)
    # Its label index entries, with their counts (each entry uncounted once, however often this runs).
    for image_id in dict.fromkeys(doc["id"] for doc in docs):
        remove_all(resources.labels, image_id)
