"""What else than labels finds a photo in the label index: its words, its faces, its colours, its review (pure).

Each is a search term with a key of its own in the `<prefix>-labels` table, beside the label keys. A term
key starts with a tab, which label_key never yields (it collapses all whitespace to single spaces and trims
it), so no label, whatever its name, can share a term's key, its entries or its counts; and the store counts
term keys apart from labels (never in a labels list). What one photo adds is bounded: MAX_WORDS words, its
face terms (two), MAX_COLORS colours, its review terms (two).
"""
from __future__ import annotations

import re

MARK = "\t"
TEXT, FACES, COLOR, HELD, REVIEW = "text", "faces", "color", "held", "review"
# Words read with less confidence than this are not indexed (OCR's weak reads are mostly noise).
MIN_WORD_CONFIDENCE = 60.0
MAX_WORDS = 32           # per photo, the most confident first
MAX_WORD_CHARS = 40
MAX_COLORS = 5
MAX_FACES = 100          # `?faces=` names a count from 1 to this
# A word is what is left after trimming punctuation at its ends; case-insensitive (casefold).
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_COLOR = re.compile(r"[a-z]{1,20}")
# The owner under which every held photo is also indexed: admins' review list (no account id holds "~").
REVIEW_OWNER = "~review"


def term_key(kind: str, value: str = "") -> str:
    """The index key of one term: a tab, its kind and, when it has one, its value ("\\ttext:carson")."""
    return f"{MARK}{kind}:{value}" if value else f"{MARK}{kind}"


def is_term_key(key: str) -> bool:
    """True for a term's key (never a label's)."""
    return key.startswith(MARK)


def word_key(word: str) -> str | None:
    """The key a word is indexed and searched under; None when nothing of it is left to find."""
    cleaned = _EDGES.sub("", " ".join(word.split()).casefold())
    if not cleaned or len(cleaned) > MAX_WORD_CHARS or " " in cleaned:
        return None
    return term_key(TEXT, cleaned)


def color_key(name: str) -> str | None:
    """The key of a simplified colour name ("red"); None for anything that cannot be one."""
    name = name.strip().casefold()
    return term_key(COLOR, name) if _COLOR.fullmatch(name) else None


def faces_key(count: int | None = None) -> str:
    """Photos with any face (count None) or with exactly count faces."""
    return term_key(FACES, str(count) if count else "")


def is_held(result: dict) -> bool:
    """True while moderation holds the photo (out of galleries and search until an admin releases it)."""
    review = result.get("review")
    return isinstance(review, dict) and review.get("held") is True


def dicts(value) -> list[dict]:
    """The dicts of a stored answer's list (nothing for a value that is not a list): what is safe to read."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, (list, tuple)) else []


def number(value) -> float:
    """A stored figure as a float; 0 for anything that is not one."""
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def word_terms(result: dict) -> dict[str, tuple[float, str]]:
    """key -> (confidence, word as read) for the photo's WORD detections at MIN_WORD_CONFIDENCE or more."""
    best: dict[str, tuple[float, str]] = {}
    for found in dicts(result.get("text_detections")):
        if found.get("Type") != "WORD":
            continue
        confidence, text = number(found.get("Confidence")), str(found.get("DetectedText") or "")
        key = word_key(text[:MAX_WORD_CHARS * 2])
        if key and confidence >= MIN_WORD_CONFIDENCE and confidence > best.get(key, (-1.0, ""))[0]:
            best[key] = (confidence, key.split(":", 1)[1])
    strongest = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:MAX_WORDS]
    return dict(strongest)


def face_terms(result: dict) -> dict[str, tuple[float, str]]:
    """The photo's face terms: any face, and its number of faces (none when it has none)."""
    faces = dicts(result.get("face_details"))
    if not faces:
        return {}
    confidence = max(number(f.get("Confidence")) for f in faces)
    count = min(len(faces), MAX_FACES)
    return {faces_key(): (confidence, "faces"), faces_key(count): (confidence, f"{count} faces")}


def color_terms(result: dict) -> dict[str, tuple[float, str]]:
    """The photo's dominant simplified colours, each with the largest share of pixels it has (as confidence)."""
    properties = result.get("image_properties")
    best: dict[str, tuple[float, str]] = {}
    for color in dicts(properties.get("DominantColors") if isinstance(properties, dict) else None):
        name, share = str(color.get("SimplifiedColor") or ""), number(color.get("PixelPercent"))
        key = color_key(name)
        if key and share > best.get(key, (-1.0, ""))[0]:
            best[key] = (share, name.strip().casefold())
    return dict(sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:MAX_COLORS])


def terms(result: dict) -> dict[str, tuple[float, str]]:
    """Every term a released (or never held) photo is found by: key -> (confidence, name shown)."""
    return {**word_terms(result), **face_terms(result), **color_terms(result)}
