"""What the label index holds for one image, and how to bring it there from what it holds now (pure).

The index has one entry per (image, label) for each label a finished image may be found by: its
labels that pass the upload's inclusion/exclusion filters, their Parents, and every vocabulary
ancestor of each (Rekognition returns ancestors as labels of their own; where a result does not,
one from before the vocabulary, they are indexed here so that "Animal" still finds the cat). Each
entry keeps the strongest confidence that names it, so a search can ask for a confidence floor. A store (sightfleet/aws/labels.py) applies the plan with conditional
writes that also move the per-owner and per-album counts, so writing the same plan twice changes nothing.

Beside labels, the index holds a photo's other search terms (sightfleet/findterms.py: its words, faces and
dominant colours) under keys no label can have. A photo that moderation holds is findable by nothing but
its review terms (its owner's held list, the admins' review list) until an admin releases it.
"""
from __future__ import annotations

from dataclasses import dataclass

from sightfleet import findterms
from sightfleet.contracts import SUCCEEDED, owner_of
from sightfleet.labelfilters import LabelFilters, at_least, findable_names, label_key, selected

# The most entries one image may have: its labels and their ancestors, cut at the strongest. With it,
# an owner's image quota also bounds the owner's index (an image and its entries count as one).
MAX_ENTRIES_PER_IMAGE = 64
# Its other terms are bounded too (findterms: words, faces, colours), so one image adds at most this many.
MAX_ALL_ENTRIES_PER_IMAGE = MAX_ENTRIES_PER_IMAGE + findterms.MAX_WORDS + 2 + findterms.MAX_COLORS
IMAGE_PREFIX = "image#"   # an entry's partition key: the image's entries are one query


@dataclass(frozen=True)
class Entry:
    """One image findable by one label, in one owner's album."""

    image_id: str
    owner: str
    album: str
    key: str          # label_key(name): what searches compare
    name: str         # the label as shown
    confidence: float
    submitted_at: str

    @property
    def identity(self) -> tuple[str, str]:
        """What makes two entries the same index item (and the same counts): the label and the album."""
        return self.key, self.album


def entries_for(result: dict, min_confidence: float = 0.0) -> list[Entry]:
    """The entries a stored result should have: none unless it SUCCEEDED, then one per findable label.

    Only labels a default read shows are indexed (min_confidence: the display threshold, or the upload's
    MinConfidence when higher), so that the counts say what a search finds; weaker stored labels are not.
    """
    if result.get("status") != SUCCEEDED:
        return []
    if findterms.is_held(result):
        return _held_entries(result)
    try:
        filters = LabelFilters.from_dict(result.get("label_filters"))
    except ValueError:   # filters this version cannot read: index every label rather than none
        filters = LabelFilters()
    floor = max(min_confidence, filters.MinConfidence or 0.0)
    best: dict[str, tuple[float, str]] = {}
    for label in at_least(selected(result.get("labels") or [], filters), floor):
        confidence = float(label.get("Confidence", 0))
        named = [label["Name"], *(p.get("Name", "") for p in label.get("Parents") or [])]
        for name in dict.fromkeys(n for given in named for n in findable_names(given)):
            key = label_key(name)
            if key and confidence > best.get(key, (-1.0, ""))[0]:
                best[key] = (confidence, name)
    strongest = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:MAX_ENTRIES_PER_IMAGE]
    return [_entry(result, key, name, confidence) for key, (confidence, name) in
            [*strongest, *findterms.terms(result).items()]]


def _entry(result: dict, key: str, name: str, confidence: float, owner: str | None = None) -> Entry:
    return Entry(image_id=result["id"], owner=owner or owner_of(result), album=result["album"], key=key, name=name,
                 confidence=round(confidence, 3), submitted_at=result["submitted_at"])


def _held_entries(result: dict) -> list[Entry]:
    """A held photo's only entries: in its owner's held list and in the admins' review list."""
    return [_entry(result, findterms.term_key(findterms.HELD), "held", 100.0),
            _entry(result, findterms.term_key(findterms.REVIEW), "review", 100.0, findterms.REVIEW_OWNER)]


def owner_label(owner: str, key: str) -> str:
    """The search indexes' partition key of one owner's one label (owners hold no "#")."""
    return f"{owner}#{key}"


def search_key(entry: Entry, album: str | None) -> dict:
    """The key a search of entry's owner and label (in album) goes on from, right after entry."""
    at = f"{entry.submitted_at}#{entry.image_id}"
    key = {"pk": IMAGE_PREFIX + entry.image_id, "sk": entry.key, "owner_label": owner_label(entry.owner, entry.key)}
    key.update({"album_at": f"{entry.album}/{at}"} if album else {"at": at})
    return key


def search_key_fits(start: dict, owner: str, key: str, album: str | None) -> bool:
    """True when start (from a client's cursor) continues a search of owner's label key (in album)."""
    order = "album_at" if album else "at"
    if set(start) != {"pk", "sk", "owner_label", order} or not all(isinstance(v, str) for v in start.values()):
        return False
    return (start["owner_label"] == owner_label(owner, key) and start["sk"] == key
            and start["pk"].startswith(IMAGE_PREFIX) and (not album or start["album_at"].startswith(album + "/")))


def search_key_order(start: dict) -> tuple[str, str]:
    """(submitted_at, image id) of the entry a search key points at."""
    at = start.get("album_at", "").rsplit("/", 1)[-1] or start.get("at", "")
    submitted_at, _, image_id = at.rpartition("#")
    return submitted_at, image_id


@dataclass(frozen=True)
class Plan:
    """Entries to add (counted), to rewrite in place (confidence changed; counts stay) and to remove (uncounted)."""

    add: tuple[Entry, ...]
    rewrite: tuple[Entry, ...]
    remove: tuple[Entry, ...]

    def __bool__(self) -> bool:
        return bool(self.add or self.rewrite or self.remove)


def plan(existing: list[Entry], wanted: list[Entry]) -> Plan:
    """What turns the existing entries of one image into the wanted ones."""
    have = {e.identity: e for e in existing}
    want = {e.identity: e for e in wanted}
    # A label that moved album is removed from the old one and added to the new (both counts move).
    remove = [e for identity, e in have.items() if identity not in want]
    add = [e for identity, e in want.items() if identity not in have]
    rewrite = [e for identity, e in want.items() if identity in have and have[identity] != e]
    return Plan(tuple(add), tuple(rewrite), tuple(remove))


def sync(store, result: dict, min_confidence: float = 0.0) -> Plan:
    """Bring the index entries of one image to what its stored result says, at min_confidence or more.

    Removals go first: an entry that changed album is removed and added again under the same key.
    Safe to repeat and to run beside another sync of the same image (each write is conditional).
    """
    wanted = entries_for(result, min_confidence)   # none unless SUCCEEDED
    steps = plan(store.entries(result["id"]), wanted)
    if steps.remove:
        store.remove_many(list(steps.remove))
    if steps.add:
        store.add_many(list(steps.add))
    for entry in steps.rewrite:
        store.rewrite(entry)
    return steps


def remove_all(store, image_id: str) -> int:
    """Remove every entry of one image (it was deleted); how many this call removed."""
    entries = store.entries(image_id)
    return store.remove_many(entries) if entries else 0
