"""The curated label vocabulary: canonical names, their hierarchy, aliases, categories and thresholds.

Read from sightfleet/data/vocabulary.json (made by scripts/vocabulary/build_vocabulary.py, see
docs/vocabulary.md). Every class the detector (COCO) or the classifier (ImageNet) can name maps to
one canonical label; labels form a directed acyclic graph through their parents, as Rekognition's
do (Cat -> Pet, Feline -> Mammal -> Animal). Pure Python: the web tier and the worker both read it.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

VOCABULARY_FILE = Path(__file__).resolve().parent / "data" / "vocabulary.json"


class VocabularyError(ValueError):
    """The vocabulary file is inconsistent (unknown parent, cycle, threshold out of range, bad mapping)."""


@dataclass(frozen=True)
class LabelInfo:
    """One canonical label: direct parents, aliases, categories, threshold (percent) and priority.

    A label is returned only at or above its threshold; a negative priority suppresses it (noisy
    classes), and among labels of equal confidence the higher priority is shown first.
    """

    name: str
    parents: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    threshold: float = 50.0
    priority: int = 0

    @property
    def suppressed(self) -> bool:
        return self.priority < 0


def _key(term: str) -> str:
    return " ".join(str(term).split()).casefold()


class Vocabulary:
    """The whole vocabulary, checked for consistency when made; lookups are dictionary reads."""

    def __init__(self, version: str, labels: Mapping[str, LabelInfo], imagenet: tuple[str, ...],
                 coco: Mapping[int, str]):
        self.version = version
        self.labels: Mapping[str, LabelInfo] = MappingProxyType(dict(labels))
        self.imagenet = tuple(imagenet)               # canonical label of each ImageNet class index
        self.coco: Mapping[int, str] = MappingProxyType(dict(coco))   # canonical label of each COCO id
        self._terms = self._index_terms()
        self._ancestors = {name: self._walk_up(name, ()) for name in self.labels}
        below: dict[str, set[str]] = {name: set() for name in self.labels}
        for name, above in self._ancestors.items():
            for ancestor in above:
                below[ancestor].add(name)
        self._descendants = {name: frozenset(found) for name, found in below.items()}
        self._depths: dict[str, int] = {}
        self._check_models()

    def _index_terms(self) -> dict[str, str]:
        """Case-folded canonical names and aliases to canonical names; an alias may not name two labels."""
        terms = {_key(name): name for name in self.labels}
        for info in self.labels.values():
            if not 0 <= info.threshold <= 100:
                raise VocabularyError(f"{info.name}: threshold {info.threshold} is outside 0-100")
            for alias in info.aliases:
                if terms.setdefault(_key(alias), info.name) != info.name:
                    raise VocabularyError(f"alias {alias!r} of {info.name} already names {terms[_key(alias)]}")
        return terms

    def _walk_up(self, name: str, path: tuple[str, ...]) -> tuple[str, ...]:
        """All ancestors of name, nearest first (breadth first, each once); a cycle or unknown parent is an error."""
        found: list[str] = []
        level = [name]
        while level:
            following = []
            for current in level:
                for parent in self.labels[current].parents:
                    if parent not in self.labels:
                        raise VocabularyError(f"{current}: parent {parent!r} is not a label")
                    if parent == name:
                        raise VocabularyError(f"{name} is its own ancestor")
                    if parent not in found:
                        found.append(parent)
                        following.append(parent)
            level = following
        return tuple(found)

    def _check_models(self) -> None:
        unknown = sorted({n for n in (*self.imagenet, *self.coco.values()) if n not in self.labels})
        if unknown:
            raise VocabularyError(f"model classes map to unknown labels: {unknown[:5]}")
        if len(self.imagenet) != 1000:
            raise VocabularyError(f"expected 1000 ImageNet classes, found {len(self.imagenet)}")

    def resolve(self, term: str) -> str | None:
        """The canonical name a canonical name or alias stands for (case-insensitive, trimmed); None if unknown."""
        return self._terms.get(_key(term))

    def ancestors(self, name: str) -> tuple[str, ...]:
        """Every ancestor of a canonical label, nearest first."""
        return self._ancestors[name]

    def descendants(self, name: str) -> frozenset[str]:
        """Every label below a canonical label (not the label itself)."""
        return self._descendants[name]

    @property
    def categories(self) -> tuple[str, ...]:
        """Every category any label is in, sorted."""
        return tuple(sorted({c for info in self.labels.values() for c in info.categories}))

    def depth(self, name: str) -> int:
        """Length of the longest parent chain above a label (Animal 0, Mammal 1, ...): more is more specific."""
        if name not in self._depths:
            parents = self.labels[name].parents
            self._depths[name] = 1 + max(self.depth(p) for p in parents) if parents else 0
        return self._depths[name]

    def to_dict(self) -> dict:
        """The published form: version, categories and every label with its hierarchy."""
        return {"version": self.version, "categories": list(self.categories),
                "labels": [{"Name": i.name, "Parents": list(i.parents), "Ancestors": list(self.ancestors(i.name)),
                            "Aliases": list(i.aliases), "Categories": list(i.categories),
                            "Threshold": i.threshold, "Priority": i.priority}
                           for i in sorted(self.labels.values(), key=lambda i: i.name)]}

    @classmethod
    def from_document(cls, document: dict) -> "Vocabulary":
        """A vocabulary from vocabulary.json's parsed form."""
        labels = {name: LabelInfo(name=name, parents=tuple(spec.get("parents", ())),
                                  aliases=tuple(spec.get("aliases", ())),
                                  categories=tuple(spec.get("categories", ())),
                                  threshold=float(spec.get("threshold", 50.0)), priority=int(spec.get("priority", 0)))
                  for name, spec in document["labels"].items()}
        models = document["models"]
        return cls(document["version"], labels, tuple(models["imagenet"]),
                   {int(k): v for k, v in models["coco"].items()})


@functools.lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    """The repository's vocabulary, read and checked once per process."""
    return Vocabulary.from_document(json.loads(VOCABULARY_FILE.read_text(encoding="utf-8")))
