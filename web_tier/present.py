"""How results look to clients: the stored document plus links a browser or program can follow."""
from __future__ import annotations

from flask import current_app, url_for
from itsdangerous import BadData, URLSafeSerializer

from sightfleet.contracts import epoch, is_image_id
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import listing_key_fits, listing_key_time
from sightfleet.labelfilters import LabelFilters, apply_filters
from sightfleet.labelindex import search_key_fits
from web_tier.services import resources, settings

# Presigned image links live minutes: a link copied out of a page (or a log, or a Referer) stops working
# soon, and a page or the JSON API hands out fresh ones on each read.
_LINK_TTL_S = 300
# Cursors this server hands out are a few hundred characters; anything far longer is not one of them.
MAX_CURSOR_CHARS = 2048
_MAX_KEY_PART = 512
# Cursors are signed with the session key under a salt of their own: a client can hand one back, never make
# or change one (what it continues is checked again after the signature: owner, album, index).
_CURSOR_SALT = "sightfleet-listing-cursor"
FOREIGN_CURSOR = "this cursor was not issued by this service, or was changed; start again without it"


def present(result: dict, filters: LabelFilters = LabelFilters()) -> dict:
    """The result with its status URL and presigned image URLs added (only ever for a row its caller may see).

    Its labels are those the filters let through: a request's, else the upload's, else the service's
    default threshold and count (the worker stores weaker ones too, for requests that ask for them).
    """
    shown = dict(result)
    shown["labels"] = shown_labels(result, filters)
    shown.pop("weaker_labels", None)   # shown among `labels` when a MinConfidence asks for them
    names = [label["Name"] for label in shown["labels"]]
    if result.get("top_label") not in names:
        shown["top_label"] = names[0] if names else None
    shown["status_url"] = url_for("api.get_image", image_id=result["id"])
    shown["page_url"] = url_for("pages.image_page", image_id=result["id"])
    outputs = resources().outputs
    for name in ("thumbnail", "annotated"):
        key = result.get(f"{name}_key")
        try:
            shown[f"{name}_url"] = outputs.presigned_url(key, _LINK_TTL_S) if key else None
        except SightfleetError:
            shown[f"{name}_url"] = None
    return shown


def shown_labels(result: dict, filters: LabelFilters) -> list[dict]:
    """The labels of a result as filters (over the upload's, over the service's defaults) show them.

    By default, the labels that passed each one's own threshold in the vocabulary; a MinConfidence asked
    for (by the read or the upload) replaces those thresholds, so the weaker labels stored beside them
    (down to the worker's floor) can show too.
    """
    try:
        uploaded = LabelFilters.from_dict(result.get("label_filters"))
    except ValueError:   # written by a version whose filters this one cannot read
        uploaded = LabelFilters()
    pool = result.get("labels") or []
    if filters.merged_over(uploaded).MinConfidence is not None:
        pool = [*pool, *(result.get("weaker_labels") or [])]
    defaults = LabelFilters(MinConfidence=settings().min_confidence, MaxLabels=settings().max_labels)
    return apply_filters(pool, filters, uploaded.merged_over(defaults))


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt=_CURSOR_SALT)


def encode_cursor(key: dict | None) -> str | None:
    """An opaque pagination cursor from the store's last key: signed, so clients cannot forge or alter one."""
    return _signer().dumps(key) if key else None


def decode_search_cursor(cursor: str | None, owner: str, key: str, album: str | None) -> dict | None:
    """Inverse of encode_cursor for a label search of owner's (album's) label key; ValueError if it does not fit."""
    start = _decoded(cursor)
    if start is not None and not search_key_fits(start, owner, key, album):
        raise ValueError("this cursor belongs to another listing; start again without it")
    return start


def _decoded(cursor: str | None) -> dict | None:
    """A cursor's key: a JSON object of short strings; ValueError for anything else."""
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_CHARS:
        raise ValueError(FOREIGN_CURSOR)
    try:
        key = _signer().loads(cursor)
    except (BadData, ValueError, TypeError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise ValueError(FOREIGN_CURSOR) from exc
    if not isinstance(key, dict) or not all(isinstance(v, str) and len(v) <= _MAX_KEY_PART for v in key.values()):
        raise ValueError("malformed cursor")
    return key


def decode_cursor(cursor: str | None, album: str | None = None, owner: str | None = None) -> dict | None:
    """Inverse of encode_cursor for a listing of owner's (None: every owner's) `album` (None: every album);
    ValueError if it does not fit, so no cursor continues another owner's listing."""
    key = _decoded(cursor)
    if key is None:
        return None
    # A cursor only continues the listing it came from: the same index, owner and album.
    if not listing_key_fits(key, owner, album) or not is_image_id(key["id"]):
        raise ValueError("this cursor belongs to another listing; start again without it")
    if epoch(listing_key_time(key)) is None:
        raise ValueError("malformed cursor")
    return key
