"""Query parameters, checked: a number out of its range or an unreadable name is a 400 with a code.

Numbers are plain decimal digits: no sign, exponent, NaN or infinity, so "-1", "1e9", "nan" and
"inf" are refused with the parameter's range rather than clamped or passed on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from flask import request

from sightfleet import findterms
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


# A listing searches by one of these at a time (each reads the label index: sightfleet/findterms.py).
SEARCH_PARAMS = ("label", "text", "faces", "color", "held")
_TRUE = ("true", "1", "yes")


@dataclass(frozen=True)
class Term:
    """What a listing searches for: the query parameter, its value as given, and the index key it reads."""

    param: str
    value: str
    key: str

    @property
    def described(self) -> str:
        """What was searched, in words (the gallery's heading)."""
        if self.param == "faces":
            return "faces" if self.key == findterms.faces_key() else f"{self.key.rsplit(':', 1)[1]} faces"
        return {"label": self.value, "text": f"the word \u201c{self.value}\u201d", "color": f"{self.value} as a main colour",
                "held": "held for review"}[self.param]


def search_term() -> Term | None:
    """The one search a listing asks for (label, text, faces, color or held); None: a plain listing."""
    asked = [name for name in SEARCH_PARAMS if request.args.get(name, "").strip()]
    if len(asked) > 1:
        raise Rejected(400, "BAD_SEARCH", f"search by one of {', '.join(SEARCH_PARAMS)} at a time, not "
                                          f"{' and '.join(asked)}")
    if not asked:
        return None
    name, value = asked[0], request.args.get(asked[0], "").strip()
    key = label_term() if name == "label" else _term_key(name, value)
    return Term(name, value[:MAX_LABEL_CHARS], key or "")


def _term_key(name: str, value: str) -> str:
    """The index key of a text, faces, color or held search; Rejected when the value cannot be one."""
    key: str | None = None
    if name == "text":
        key = findterms.word_key(value) if len(value) <= findterms.MAX_WORD_CHARS else None
        problem = f"text is one word of at most {findterms.MAX_WORD_CHARS} characters (letters or digits), e.g. carson"
    elif name == "faces":
        key = _faces_key(value.lower())
        problem = f"faces is true (any face) or a number of faces from 1 to {findterms.MAX_FACES}"
    elif name == "color":
        key = findterms.color_key(value)
        problem = "color is a simple colour name of letters only, e.g. red, blue, green"
    else:
        key = findterms.term_key(findterms.HELD) if value.lower() in _TRUE else None
        problem = "held takes true: your photos that moderation holds for review"
    if key is None:
        raise Rejected(400, f"BAD_{name.upper()}", problem)
    return key


def _faces_key(value: str) -> str | None:
    if value in _TRUE[:1]:
        return findterms.faces_key()
    if _WHOLE.fullmatch(value) and 1 <= int(value) <= findterms.MAX_FACES:
        return findterms.faces_key(int(value))
    return None
