"""How results look to clients: the stored document plus links a browser or program can follow."""
from __future__ import annotations

import base64
import json

from flask import url_for

from sightfleet.contracts import epoch, is_image_id
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import listing_key_fits, listing_key_time
from web_tier.services import resources

# Presigned image links live minutes: a link copied out of a page (or a log, or a Referer) stops working
# soon, and a page or the JSON API hands out fresh ones on each read.
_LINK_TTL_S = 300
# Cursors this server hands out are a few hundred characters; anything far longer is not one of them.
MAX_CURSOR_CHARS = 2048
_MAX_KEY_PART = 512


def present(result: dict) -> dict:
    """The result with its status URL and presigned image URLs added (only ever for a row its caller may see)."""
    shown = dict(result)
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


def encode_cursor(key: dict | None) -> str | None:
    """An opaque pagination cursor from DynamoDB's LastEvaluatedKey."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


def decode_cursor(cursor: str | None, album: str | None = None, owner: str | None = None) -> dict | None:
    """Inverse of encode_cursor for a listing of owner's (None: every owner's) `album` (None: every album);
    ValueError if it does not fit, so no cursor continues another owner's listing."""
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_CHARS:
        raise ValueError("malformed cursor")
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise ValueError("malformed cursor") from exc
    if not isinstance(key, dict) or not all(isinstance(v, str) and len(v) <= _MAX_KEY_PART for v in key.values()):
        raise ValueError("malformed cursor")
    # A cursor only continues the listing it came from: the same index, owner and album.
    if not listing_key_fits(key, owner, album) or not is_image_id(key["id"]):
        raise ValueError("this cursor belongs to another listing; start again without it")
    if epoch(listing_key_time(key)) is None:
        raise ValueError("malformed cursor")
    return key
