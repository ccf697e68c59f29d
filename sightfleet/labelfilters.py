"""Per-request label filters as Rekognition's DetectLabels takes them, and the one place label names resolve.

Filters are pure: parse them from request parameters (ValueError with a code on anything
out of range), keep them in a job and a result as a plain dict, apply them to a stored label list.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Callable, Iterable

from sightfleet.vocabulary import load_vocabulary

# Rekognition's limits on GeneralLabelsSettings: at most 100 names per list, 50 characters each, this alphabet.
MAX_FILTER_NAMES = 100
MAX_NAME_CHARS = 50
# MaxLabels: Rekognition has no upper bound; a stored result holds far fewer (the worker's cap).
MAX_MAX_LABELS = 1000
LIST_PARAMS = ("LabelInclusionFilters", "LabelExclusionFilters", "LabelCategoryInclusionFilters",
               "LabelCategoryExclusionFilters")
NUMBER_PARAMS = ("MinConfidence", "MaxLabels")
PARAMS = NUMBER_PARAMS + LIST_PARAMS


class BadFilter(ValueError):
    """A filter parameter that cannot be used; carries an error code for the 400 answer."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def label_key(name: str) -> str:
    """How a label name is compared and indexed: case-insensitive."""
    return " ".join(name.split()).casefold()


def canonical_label(term: str) -> str | None:
    """The canonical label a user's term names (a name or an alias, any case); None when it names none."""
    return load_vocabulary().resolve(term or "")


def canonical_category(term: str) -> str | None:
    """The category a user's term names (any case); None when it names none."""
    return {label_key(c): c for c in load_vocabulary().categories}.get(label_key(term or ""))


def findable_names(name: str) -> list[str]:
    """The names a stored label makes its image findable by: its canonical name and every ancestor's.

    A label the vocabulary does not know (a result from before it) is findable by its own name only.
    """
    canonical = canonical_label(name)
    return [canonical, *load_vocabulary().ancestors(canonical)] if canonical else [name]


@dataclass(frozen=True)
class LabelFilters:
    """MinConfidence, MaxLabels and the four inclusion/exclusion lists; None or () where not given."""

    MinConfidence: float | None = None
    MaxLabels: int | None = None
    LabelInclusionFilters: tuple = ()
    LabelExclusionFilters: tuple = ()
    LabelCategoryInclusionFilters: tuple = ()
    LabelCategoryExclusionFilters: tuple = ()

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in (None, ()) for f in fields(self))

    def to_dict(self) -> dict:
        """The filters given, as JSON (what a job and a result carry)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v not in (None, ())}

    @classmethod
    def from_dict(cls, doc: dict | None) -> "LabelFilters":
        """Filters from to_dict's form (a job's or a result's); BadFilter when they do not check out."""
        doc = doc or {}
        if not isinstance(doc, dict) or set(doc) - set(PARAMS):
            raise BadFilter("BAD_FILTER", f"label filters are an object of {', '.join(PARAMS)}")
        return parse_filters(lambda name: [str(v) for v in _as_list(doc.get(name))])

    def merged_over(self, base: "LabelFilters") -> "LabelFilters":
        """These filters, with base's where these give none (a read's over an upload's)."""
        return LabelFilters(**{f.name: getattr(self, f.name) if getattr(self, f.name) not in (None, ())
                               else getattr(base, f.name) for f in fields(self)})


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse_filters(values: Callable[[str], list[str]]) -> LabelFilters:
    """Filters from request parameters (`values(name)`: every value given for name); BadFilter when unusable.

    Lists may be given as repeated parameters or comma-separated; names resolve to canonical labels.
    """
    return LabelFilters(
        MinConfidence=_number(values("MinConfidence"), "MinConfidence", 0, 100, float),
        MaxLabels=_number(values("MaxLabels"), "MaxLabels", 0, MAX_MAX_LABELS, int),
        LabelInclusionFilters=_names(values("LabelInclusionFilters"), "LabelInclusionFilters", canonical_label),
        LabelExclusionFilters=_names(values("LabelExclusionFilters"), "LabelExclusionFilters", canonical_label),
        LabelCategoryInclusionFilters=_names(values("LabelCategoryInclusionFilters"),
                                             "LabelCategoryInclusionFilters", canonical_category),
        LabelCategoryExclusionFilters=_names(values("LabelCategoryExclusionFilters"),
                                             "LabelCategoryExclusionFilters", canonical_category))


_WHOLE = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")


def _number(given: list[str], name: str, low: float, high: float, kind: type):
    texts = [t.strip() for t in given if t.strip()]
    if not texts:
        return None
    if len(texts) == 1 and (_WHOLE if kind is int else _DECIMAL).fullmatch(texts[0]):
        value = kind(texts[0])
        if low <= value <= high:
            return value
    what = "a whole number" if kind is int else "a number"
    raise BadFilter(f"BAD_{name.upper()}", f"{name} must be {what} from {low:g} to {high:g}")


def _names(given: list[str], name: str, resolve: Callable[[str], str | None]) -> tuple:
    terms = [t.strip() for value in given for t in value.split(",") if t.strip()]
    if len(terms) > MAX_FILTER_NAMES:
        raise BadFilter("BAD_FILTER", f"{name} takes at most {MAX_FILTER_NAMES} names, not {len(terms)}")
    resolved = []
    for term in terms:
        canonical = resolve(term) if len(term) <= MAX_NAME_CHARS else None
        if canonical is None:
            shown = term if len(term) <= MAX_NAME_CHARS else term[:MAX_NAME_CHARS] + "..."
            raise BadFilter("BAD_FILTER", f"{name}: {shown!r} names no label or category of the vocabulary "
                                          "(GET /api/vocabulary lists them)")
        resolved.append(canonical)
    return tuple(dict.fromkeys(resolved))


def _keys(names: Iterable[str]) -> set[str]:
    return {label_key(n) for n in names}


def _categories(label: dict) -> set[str]:
    return _keys(c.get("Name", "") for c in label.get("Categories") or [])


def selected(labels: Iterable[dict], filters: LabelFilters) -> list[dict]:
    """The labels that pass the inclusion and exclusion filters (no confidence or count cut), in order.

    As Rekognition: with any inclusion filter, a label stays when its name or one of its categories is
    included; then the exclusions take out what they name.
    """
    include, exclude = _keys(filters.LabelInclusionFilters), _keys(filters.LabelExclusionFilters)
    include_cat = _keys(filters.LabelCategoryInclusionFilters)
    exclude_cat = _keys(filters.LabelCategoryExclusionFilters)
    kept = []
    for label in labels:
        key, categories = label_key(label["Name"]), _categories(label)
        if (include or include_cat) and key not in include and not categories & include_cat:
            continue
        if key in exclude or categories & exclude_cat:
            continue
        kept.append(label)
    return kept


def at_least(labels: Iterable[dict], floor: float) -> list[dict]:
    """The labels at or above floor percent, each with only its instances (boxes) at or above it too."""
    return [{**label, "Instances": [i for i in label.get("Instances") or [] if i.get("Confidence", 0) >= floor]}
            if label.get("Instances") else label
            for label in labels if label.get("Confidence", 0) >= floor]


def apply_filters(labels: Iterable[dict], filters: LabelFilters, defaults: LabelFilters) -> list[dict]:
    """What a reader sees: the selected labels at or above MinConfidence, strongest first, at most MaxLabels.

    defaults fill in what filters leave out (the service's display threshold and label count).
    """
    chosen = filters.merged_over(defaults)
    kept = at_least(selected(labels, chosen), chosen.MinConfidence or 0.0)
    # Stable: among equal confidences the stored order stands (the worker puts the more specific label first).
    kept.sort(key=lambda label: -label.get("Confidence", 0))
    return kept if chosen.MaxLabels is None else kept[:chosen.MaxLabels]
