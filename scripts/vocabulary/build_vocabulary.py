"""Stage 2 of the vocabulary: WordNet subgraph (stage 1) + hand curation (curation.py) -> vocabulary.json.

Each ImageNet class finds its nearest anchor in WordNet (itself or a hypernym, breadth first): a
GROUP anchor's label, or, under a BROAD anchor, a label of its own named from its first WordNet
lemma with the anchor as parent. Anchors take their parents from the nearest anchor above them.
Run `python scripts/vocabulary/build_vocabulary.py` after changing curation.py; tests check the
committed file is what this makes.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import curation  # noqa: E402  (a sibling file, not a package)

DATA = HERE.parents[1] / "sightfleet" / "data"
SCHEMA = 1
LATIN = re.compile(r"^[A-Z][a-z]+ [a-z]+$")      # a binomial name ("Hippopotamus amphibius"): no one searches it


def title(name: str) -> str:
    """A readable label name: 'tree frog' -> 'Tree Frog', keeping capitals already there ('Persian cat')."""
    return " ".join(w[:1].upper() + w[1:] for w in name.replace("_", " ").split())


def nearest_anchor(wnid: str, synsets: dict, anchors: dict, include_self: bool = True) -> str | None:
    """The closest anchor at or above wnid in WordNet, breadth first (the first hypernym wins a tie)."""
    level, seen = ([wnid] if include_self else list(synsets[wnid]["hypernyms"])), set()
    while level:
        for current in level:
            if current in anchors:
                return current
        seen.update(level)
        level = [h for current in level for h in synsets[current]["hypernyms"] if h not in seen]
    return None


class Builder:
    """Collects labels as classes and anchors are placed."""

    def __init__(self, wordnet: dict):
        self.synsets = wordnet["synsets"]
        self.classes = wordnet["classes"]
        self.anchors = {a[0]: a for a in curation.ANCHORS}
        self.labels: dict[str, dict] = {}

    def label(self, name: str, parents=(), categories=(), aliases=(), threshold=None) -> str:
        entry = self.labels.setdefault(name, {"parents": [], "aliases": [], "categories": [], "threshold": threshold})
        for key, values in (("parents", parents), ("categories", categories), ("aliases", aliases)):
            entry[key] += [v for v in values if v and v not in entry[key] and v != name]
        if entry["threshold"] is None:
            entry["threshold"] = threshold
        return name

    def anchor_label(self, wnid: str) -> str | None:
        """The label of an anchor (made with its parents on first use); None for a ROOT."""
        _, name, mode, categories, aliases = self.anchors[wnid]
        if mode == curation.ROOT:
            return None
        if name not in self.labels:
            above = nearest_anchor(wnid, self.synsets, self.anchors, include_self=False)
            parent = self.anchor_label(above) if above else None
            threshold = curation.GROUP_THRESHOLD if mode == curation.GROUP else curation.OWN_THRESHOLD
            self.label(name, (parent,), categories, aliases, threshold)
        return name

    def place_class(self, wnid: str) -> str:
        """The canonical label of one ImageNet class."""
        if wnid in curation.CLASS_NAMES:
            name = curation.CLASS_NAMES[wnid]
            if name in self.labels or name in curation.EXTRA_LABELS:
                return self.label(name)
            return self._own(wnid, name)
        anchor = nearest_anchor(wnid, self.synsets, self.anchors)
        if anchor is not None and self.anchors[anchor][2] == curation.GROUP:
            return self.anchor_label(anchor)
        return self._own(wnid, title(self.synsets[wnid]["lemmas"][0]))

    def _own(self, wnid: str, name: str) -> str:
        """A class as a label of its own under its nearest anchor, its other common WordNet names as aliases."""
        anchor = nearest_anchor(wnid, self.synsets, self.anchors, include_self=False)
        parent = self.anchor_label(anchor) if anchor else None
        categories = () if parent else self.anchors.get(anchor, (0, 0, 0, (curation.EVERYDAY,)))[3]
        aliases = [title(lemma) for lemma in self.synsets[wnid]["lemmas"] if not LATIN.match(lemma)]
        return self.label(name, (parent,), categories, aliases, curation.OWN_THRESHOLD)

    def finish(self) -> dict:
        for name, (parents, categories) in curation.EXTRA_LABELS.items():
            self.label(name, parents, categories, (), curation.DETECTOR_THRESHOLD)
        for name, extra in curation.EXTRA_PARENTS.items():
            self.label(name, extra)
        detector = set(curation.COCO.values())
        for name, entry in self.labels.items():
            if name in detector:
                entry["threshold"] = max(entry["threshold"], curation.DETECTOR_THRESHOLD)
            entry["threshold"] = curation.THRESHOLDS.get(name, entry["threshold"])
            entry["priority"] = -1 if name in curation.SUPPRESSED else 0
            entry["categories"] = entry["categories"] or self.inherited_categories(name)
        self.drop_clashing_aliases()
        return self.labels

    def drop_clashing_aliases(self) -> None:
        """An alias that is another label's name, or another label's alias too, would make search ambiguous."""
        taken = {name.casefold(): name for name in self.labels}
        for name, entry in sorted(self.labels.items()):
            kept = []
            for alias in entry["aliases"]:
                owner = taken.setdefault(alias.casefold(), name)
                if owner == name:
                    kept.append(alias)
                else:
                    print(f"dropped alias {alias!r} of {name}: it names {owner}", file=sys.stderr)
            entry["aliases"] = kept

    def inherited_categories(self, name: str) -> list[str]:
        """A label without categories of its own takes its parents' (and so on up)."""
        found: list[str] = []
        for parent in self.labels[name]["parents"]:
            own = self.labels[parent]["categories"] or self.inherited_categories(parent)
            found += [c for c in own if c not in found]
        return found or [curation.EVERYDAY]


def build(wordnet: dict) -> dict:
    """The vocabulary document."""
    builder = Builder(wordnet)
    imagenet = [builder.place_class(wnid) for wnid in builder.classes]
    unknown = sorted(set(curation.CLASS_NAMES) - set(builder.classes))
    if unknown:
        raise SystemExit(f"curation names classes that are not ImageNet classes: {unknown}")
    labels = builder.finish()
    missing = sorted(set(curation.COCO.values()) - set(labels))
    if missing:
        raise SystemExit(f"COCO classes map to labels that do not exist: {missing}")
    body = {"labels": dict(sorted(labels.items())),
            "models": {"imagenet": imagenet, "coco": {str(k): v for k, v in sorted(curation.COCO.items())}}}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return {"version": f"{SCHEMA}.{digest}", **body}


def render(document: dict) -> str:
    """vocabulary.json's exact text (one label per line keeps diffs readable)."""
    labels = ",\n".join(f"  {json.dumps(n)}: {json.dumps(v, sort_keys=True)}" for n, v in document["labels"].items())
    imagenet = ",\n".join(f"   {json.dumps(n)}" for n in document["models"]["imagenet"])
    return (f'{{"version": {json.dumps(document["version"])},\n "labels": {{\n{labels}\n }},\n'
            f' "models": {{"coco": {json.dumps(document["models"]["coco"])},\n  "imagenet": [\n{imagenet}\n  ]}}\n}}\n')


def main() -> int:
    document = build(json.loads((DATA / "wordnet_imagenet.json").read_text()))
    (DATA / "vocabulary.json").write_text(render(document))
    print(f"vocabulary {document['version']}: {len(document['labels'])} labels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
