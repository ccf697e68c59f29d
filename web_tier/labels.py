"""Browse and search by label: `GET /api/images?label=` (search_page), `GET /api/labels` and the /labels page.

A search reads the label index (sightfleet/aws/labels.py): one owner's entries of one canonical
label, newest first; the rows it names are then read by id and shown as any listing shows them.
Each caller searches and counts only their own labels; an admin may name another owner, but a
label search is always one owner's (the index is partitioned by owner).
"""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request, url_for

from sightfleet.contracts import owner_of
from sightfleet.findterms import is_held
from sightfleet.interfaces import EVERY_OWNER
from sightfleet.labelindex import search_key
from web_tier.owners import listing_owner, shown
from web_tier.present import decode_search_cursor
from web_tier.query import album_filter
from web_tier.services import albums, resources
from web_tier.submit import Rejected

bp = Blueprint("labels", __name__)
MAX_READS = 10


def search_owner() -> str:
    """The one owner whose labels a request reads: the caller, or for admins `?owner=<id>`."""
    owner = listing_owner()
    if owner is EVERY_OWNER:
        raise Rejected(400, "BAD_OWNER", "labels are searched and counted per owner: name one with ?owner=<id>")
    return owner


def search_start(cursor: str | None, owner: str, key: str, album: str | None) -> dict | None:
    """The search key a client's cursor continues from; Rejected when it belongs to another listing."""
    try:
        return decode_search_cursor(cursor, owner, key, album)
    except ValueError as exc:
        raise Rejected(400, "BAD_CURSOR", str(exc)) from exc


def search_page(owner: str, key: str, album: str | None, status: str | None, floor: float, limit: int,
                start: dict | None, held: bool = False) -> tuple[list[dict], dict | None]:
    """One page of owner's images carrying label (or term) key, newest first, and the key of the next page.

    Entries whose row is gone, deleted, (after a reprocess) of another status or no longer as held as
    the search asks (released meanwhile) are skipped; reads go on
    (at most MAX_READS queries) until the page is full, then the cursor points after the last one shown.
    """
    found: list[tuple] = []
    for _ in range(MAX_READS):
        entries, start = resources().labels.search(owner, key, album, floor, limit + 1 - len(found), start)
        rows = {doc["id"]: doc for doc in resources().results.get_many([e.image_id for e in entries])}
        found += [(e, rows[e.image_id]) for e in entries
                  if e.image_id in rows and _listed(rows[e.image_id], owner, status, held)]
        if len(found) > limit or not start:
            break
    if len(found) > limit:
        return [doc for _, doc in found[:limit]], search_key(found[limit - 1][0], album)
    return [doc for _, doc in found], start


def _listed(doc: dict, owner: str, status: str | None, held: bool) -> bool:
    return (shown(doc) and owner_of(doc) == owner and (status is None or doc["status"] == status)
            and is_held(doc) == held)


def label_counts(owner: str, album: str | None) -> list[dict]:
    """Owner's labels (one album's) with their counts, most frequent first, each with its search link."""
    return [{"name": c["name"], "count": c["count"],
             "search_url": url_for("api.list_images", label=c["name"], album=album, owner=_owner_param())}
            for c in resources().labels.counts(owner, album)]


def _owner_param() -> str | None:
    """The `owner` a link keeps (an admin's look at another owner's labels)."""
    return request.args.get("owner") or None


@bp.get("/api/labels")
def list_labels():
    """The caller's labels (an admin's: `?owner=`), or one album's (`?album=`), with counts, most frequent first."""
    owner, album = search_owner(), album_filter()
    return jsonify({"owner": owner, "album": album, "labels": label_counts(owner, album)})


@bp.get("/labels")
def labels_page():
    owner, album = search_owner(), album_filter()
    return render_template("labels.html", labels=label_counts(owner, album), album=album,
                           albums=albums().choices(album, owner), owner=_owner_param())
