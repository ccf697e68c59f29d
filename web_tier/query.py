"""Query parameters, checked: a number out of its range or an unreadable name is a 400 with a code.

Numbers are plain decimal digits: no sign, exponent, NaN or infinity, so "-1", "1e9", "nan" and
"inf" are refused with the parameter's range rather than clamped or passed on.
"""
from __future__ import annotations

import re

from flask import request

from sightfleet.contracts import STATUSES, clean_album
from sightfleet.labelfilters import BadFilter, LabelFilters, canonical_label, label_key, parse_filters
from web_tier.submit import Rejected

_WHOLE = re.compile(r"[0-9]{1,9}")
MAX_LABEL_CHARS = 100
_DECIMAL = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")


def number(name: str, code: str, low: float, high: float, default: float, whole: bool = False) -> float:
    """The parameter as a number from low to high (default when absent); Rejected otherwise."""
    text = request.args.get(name, "").strip()
    if not text:
        return default
    if (_WHOLE if whole else _DECIMAL).fullmatch(text):
        value = int(text) if whole else float(text)
        if low <= value <= high:
            return value
    kind = "a whole number" if whole else "a number"
    raise Rejected(400, code, f"{name} must be {kind} from {low:g} to {high:g}")


def album_filter() -> str | None:
    """The `album` to list (None: every album); Rejected when it cannot be an album name."""
    album = request.args.get("album", "").strip()
    if not album:
        return None
    try:
        return clean_album(album)
    except ValueError as exc:
        raise Rejected(400, "BAD_ALBUM", str(exc)) from exc


def label_filters() -> LabelFilters:
    """The request's Rekognition-style label filters (query string or form, repeated or comma-separated)."""
    try:
        return parse_filters(lambda name: request.args.getlist(name) + request.form.getlist(name))
    except BadFilter as exc:
        raise Rejected(400, exc.code, str(exc)) from exc


def label_term() -> str | None:
    """The `label` to search for, as an index key (None: no label search); Rejected when it is too long.

    A name or alias of the vocabulary stands for its canonical label; any other name for itself, as
    results from before the vocabulary were indexed under the names they carry.
    """
    term = request.args.get("label", "").strip()
    if not term:
        return None
    if len(term) > MAX_LABEL_CHARS:
        raise Rejected(400, "BAD_LABEL", f"label is a name of at most {MAX_LABEL_CHARS} characters")
    return label_key(canonical_label(term) or term)


def status_filter() -> str | None:
    """The `status` to list (None: every status), upper-cased; Rejected unless it is a known status."""
    status = request.args.get("status", "").strip().upper() or None
    if status and status not in STATUSES:
        raise Rejected(400, "BAD_STATUS", f"status must be one of {', '.join(STATUSES)}")
    return status
