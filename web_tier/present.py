"""How results look to clients: the stored document plus links a browser or program can follow."""
from __future__ import annotations

import base64
import json

from flask import url_for

from sightfleet.contracts import epoch, is_image_id
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import RESULT_KIND
from web_tier.services import resources

_LINK_TTL_S = 3600
# Cursors this server hands out are a few hundred characters; anything far longer is not one of them.
MAX_CURSOR_CHARS = 2048
_MAX_KEY_PART = 512


def present(result: dict) -> dict:
    """The result with its status URL and presigned image URLs added."""
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


def decode_cursor(cursor: str | None, album: str | None = None) -> dict | None:
    """Inverse of encode_cursor for a listing of `album` (None: every image); ValueError if it does not fit."""
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
    # A cursor only continues the listing it came from: the same index and, for albums, the same album.
    expected = {"id", "submitted_at", "album" if album else "kind"}
    if (set(key) != expected or not is_image_id(key["id"]) or key.get("album", album) != album
            or key.get("kind", RESULT_KIND) != RESULT_KIND):
        raise ValueError("this cursor belongs to another listing; start again without it")
    if epoch(key["submitted_at"]) is None:
        raise ValueError("malformed cursor")
    return key
