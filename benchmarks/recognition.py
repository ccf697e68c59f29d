"""Label quality and cost on labelled real photos: classifier top-1/top-5, expected labels found, wrong labels, CPU.

Run from the repository root:  .venv/bin/python benchmarks/recognition.py [--classifier efficientnet_lite3]
Photos: benchmarks/data/recognition_photos.txt names each photo's source, its true ImageNet classes and
the label a person would search for (docs/recognition.md: sources and licences). Sources missing on this
machine are skipped and counted. Scores use this checkout's vocabulary whatever code runs, so
`--code DIR` measures another checkout (the base commit in a temporary worktree) on the same terms:

  git worktree add /tmp/base d2b4bee && .venv/bin/python benchmarks/recognition.py --code /tmp/base

- top-1/top-5: the classifier alone, against the photo's true classes (photos that have one);
- found: the expected label is a result label's name or one of its parents, as a search would match
  it (names and aliases, case-insensitive);
- top right: the first label is acceptable; labels: result labels per photo;
- wrong per photo: result labels that are neither the expected label (or another acceptable one), its
  ancestors nor its descendants; raw ImageNet names are read as the vocabulary maps them, so a
  raw "Tabby" is not wrong on a cat;
- CPU per image: process time of the whole pipeline (decode to annotated copy) and of the classifier.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PHOTOS_FILE = REPO / "benchmarks" / "data" / "recognition_photos.txt"
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")      # Debian package opencv-doc
TUX_STAMPS = Path("/usr/share/tuxpaint/stamps")                        # Debian package tuxpaint-stamps-default
TESTDATA = REPO.parent / "shared" / "testdata" / "exif-samples"


@dataclasses.dataclass(frozen=True)
class Photo:
    """One labelled photo: where it is, its true ImageNet class names and the labels a person expects."""

    source: str
    path: str
    classes: tuple[str, ...]
    expected: str
    also: tuple[str, ...]


def read_photos(path: Path = PHOTOS_FILE) -> list[Photo]:
    photos = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            source, name, classes, expected, also = line.split("|")
            photos.append(Photo(source, name, tuple(c for c in classes.split(";") if c), expected,
                                tuple(a for a in also.split(";") if a)))
    return photos


def load_image(photo: Photo) -> Image.Image | None:
    """The photo as RGB (cut-outs flattened on white), or None where its source is not installed."""
    if photo.source == "skimage":
        from skimage import data
        pixels = getattr(data, photo.path)()
        return Image.fromarray(pixels[0] if photo.path == "stereo_motorcycle" else pixels).convert("RGB")
    folders = {"opencv": OPENCV_SAMPLES, "tux": TUX_STAMPS, "testdata": TESTDATA,
               "matplotlib": Path(importlib.util.find_spec("matplotlib").origin).parent / "mpl-data" / "sample_data"}
    file = folders[photo.source] / photo.path
    if not file.exists():
        return None
    image = Image.open(file)
    if image.mode in ("RGBA", "LA", "P"):
        flat = Image.new("RGBA", image.size, "white")
        flat.alpha_composite(image.convert("RGBA"))
        image = flat
    return image.convert("RGB")


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def load_vocabulary_module():
    """This checkout's sightfleet/vocabulary.py, loaded by path so that --code's checkout may lack it."""
    spec = importlib.util.spec_from_file_location("_scoring_vocabulary", REPO / "sightfleet" / "vocabulary.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.load_vocabulary()


def display_name(raw: str) -> str:
    """An ImageNet name as the code before the vocabulary showed it: its first synonym, capitalised."""
    first = raw.split(",")[0].strip()
    return first[:1].upper() + first[1:]


class Scorer:
    """Reads result labels, raw or canonical, as the vocabulary maps them."""

    def __init__(self, vocabulary, imagenet_names: list[str]):
        self.vocabulary = vocabulary
        from app_tier.pipeline.names import COCO_NAMES
        self.raw = {display_name(raw): vocabulary.imagenet[i] for i, raw in enumerate(imagenet_names)}
        self.raw.update({name: vocabulary.coco[cid] for cid, name in COCO_NAMES.items()})
        self.index = {raw.split(",")[0].strip().lower(): i for i, raw in enumerate(imagenet_names)}

    def class_indices(self, photo: Photo) -> set[int]:
        return {self.index[name.lower()] for name in photo.classes}

    def canonical(self, name: str) -> str | None:
        return self.vocabulary.resolve(name) or self.raw.get(name)

    def acceptable(self, photo: Photo) -> set[str]:
        found = set()
        for term in (photo.expected, *photo.also):
            name = self.vocabulary.resolve(term)
            if name is None:
                raise SystemExit(f"{photo.path}: {term!r} is not in the vocabulary")
            found |= {name, *self.vocabulary.ancestors(name), *self.vocabulary.descendants(name)}
        return found

    def found(self, photo: Photo, labels: list[dict]) -> bool:
        """A search for the expected term matches a label's name or one of its parents."""
        wanted = self.vocabulary.resolve(photo.expected)
        names = [label["Name"] for label in labels]
        names += [parent["Name"] for label in labels for parent in label.get("Parents", [])]
        return any(self.vocabulary.resolve(name) == wanted for name in names)

    def wrong(self, photo: Photo, labels: list[dict]) -> int:
        fine = self.acceptable(photo)
        return sum(self.canonical(label["Name"]) not in fine for label in labels)


def pipeline_settings(module, classifier: str | None, inference: str):
    """PipelineSettings for the run; a checkout without the classifier setting runs its only classifier."""
    fields = {f.name for f in dataclasses.fields(module.PipelineSettings)}
    options = {"inference": inference}
    if classifier and "classifier" in fields:
        options["classifier"] = classifier
    elif classifier:
        raise SystemExit("this checkout has no classifier setting")
    return module.PipelineSettings(**options)


def classify(pipeline, images: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Class probabilities per photo and the classifier's CPU seconds per photo (preprocessing included)."""
    started = time.process_time()
    rows = [pipeline.classifier.run([pipeline.classifier.prepare(rgb)])[0] for rgb in images]
    return np.stack(rows), (time.process_time() - started) / len(images)


def evaluate(pipeline, photos: list[Photo], images: list[Image.Image], scorer: Scorer, repeats: int = 1) -> dict:
    """Every figure of one configuration; CPU figures are the median of `repeats` passes over the photos."""
    from app_tier.pipeline import ImageInput
    arrays = [np.asarray(image) for image in images]
    classify(pipeline, arrays[:3])                                   # warm caches before timing
    passes = [classify(pipeline, arrays) for _ in range(repeats)]
    probabilities, classifier_cpu = passes[0][0], statistics.median(cpu for _, cpu in passes)
    inputs = [ImageInput(id=f"p{i}", data=jpeg(image), filename=p.path) for i, (p, image) in
              enumerate(zip(photos, images))]
    pipeline.process(inputs[:3])
    timed = []
    for _ in range(repeats):
        started = time.process_time()
        outcomes = pipeline.process(inputs)
        timed.append((time.process_time() - started) / len(inputs))
    pipeline_cpu = statistics.median(timed)
    ranked = np.argsort(-probabilities, axis=1)
    with_class = [(i, scorer.class_indices(p)) for i, p in enumerate(photos) if p.classes]
    top1 = sum(int(ranked[i, 0]) in classes for i, classes in with_class) / len(with_class)
    top5 = sum(bool(set(ranked[i, :5].tolist()) & classes) for i, classes in with_class) / len(with_class)
    found = [scorer.found(p, o.labels) for p, o in zip(photos, outcomes)]
    wrong = [scorer.wrong(p, o.labels) for p, o in zip(photos, outcomes)]
    top_right = [bool(o.labels) and scorer.canonical(o.labels[0]["Name"]) in scorer.acceptable(p)
                 for p, o in zip(photos, outcomes)]
    return {"photos": len(photos), "with_class": len(with_class), "top1": top1, "top5": top5,
            "found": sum(found) / len(found), "wrong_per_photo": sum(wrong) / len(wrong),
            "photos_with_wrong": sum(w > 0 for w in wrong) / len(wrong),
            "top_label_right": sum(top_right) / len(top_right), "labels_per_photo":
            sum(len(o.labels) for o in outcomes) / len(outcomes),
            "pipeline_cpu_ms": pipeline_cpu * 1000, "classifier_cpu_ms": classifier_cpu * 1000,
            "merge_ms": statistics.median(o.timings.get("merge", 0.0) for o in outcomes),
            "misses": [p.path for p, hit in zip(photos, found) if not hit]}


def lite3_variants(photos: list[Photo], images: list[Image.Image], scorer: Scorer) -> dict[str, tuple]:
    """Lite3's top-1/top-5 with its input as the file declares it against the corrected scaling."""
    import openvino as ov
    from app_tier.pipeline import runtime
    from app_tier.pipeline.models import OpenVinoQuantizedClassifier
    core = ov.Core()
    config = runtime.compile_config(1, "f32")
    answers = {}
    for rescale in (False, True):
        model = OpenVinoQuantizedClassifier(core.compile_model(runtime.convert_lite3(rescale), "CPU", config))
        probabilities, _ = classify(type("P", (), {"classifier": model}), [np.asarray(i) for i in images])
        ranked = np.argsort(-probabilities, axis=1)
        rows = [(i, scorer.class_indices(p)) for i, p in enumerate(photos) if p.classes]
        answers["pixels scaled to (x - 127) / 128" if rescale else "pixels fed as the file's uint8"] = (
            sum(int(ranked[i, 0]) in c for i, c in rows) / len(rows),
            sum(bool(set(ranked[i, :5].tolist()) & c) for i, c in rows) / len(rows))
    return answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", nargs="*", default=[None], help="classifiers to compare (default: the default)")
    parser.add_argument("--inference", default="openvino", choices=("openvino", "native"))
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose pipeline runs (default: this one)")
    parser.add_argument("--variants", action="store_true", help="also Lite3 with its input fed as the file declares")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes over the photos (median)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    import app_tier.pipeline as module
    vocabulary = load_vocabulary_module()
    listed = read_photos()
    loaded = [(p, load_image(p)) for p in listed]
    photos = [p for p, image in loaded if image is not None]
    images = [image for _, image in loaded if image is not None]
    print(f"{len(photos)} photos ({len(listed) - len(photos)} skipped: source not installed); "
          f"code {args.code}; vocabulary {vocabulary.version}")
    results = {}
    for classifier in args.classifier:
        pipeline = module.Pipeline(pipeline_settings(module, classifier, args.inference))
        scorer = Scorer(vocabulary, pipeline.classifier.names)
        name = getattr(pipeline.classifier, "MODEL", "efficientnet_lite0")
        results[name] = evaluate(pipeline, photos, images, scorer, args.repeats)
    print(f"{'classifier':<20} {'top-1':>6} {'top-5':>6} {'found':>6} {'wrong/photo':>11} {'any wrong':>9} "
          f"{'top right':>9} {'labels':>6} {'CPU ms/img':>10} {'classifier ms':>13} {'merge ms':>8}")
    for name, r in results.items():
        print(f"{name:<20} {r['top1']:>6.1%} {r['top5']:>6.1%} {r['found']:>6.1%} {r['wrong_per_photo']:>11.2f} "
              f"{r['photos_with_wrong']:>9.1%} {r['top_label_right']:>9.1%} {r['labels_per_photo']:>6.1f} "
              f"{r['pipeline_cpu_ms']:>10.1f} {r['classifier_cpu_ms']:>13.1f} {r['merge_ms']:>8.2f}")
        print(f"  expected label not found ({len(r['misses'])}): {', '.join(r['misses'])}")
    if args.variants:
        for variant, (top1, top5) in lite3_variants(photos, images, scorer).items():
            print(f"efficientnet_lite3, {variant}: top-1 {top1:.1%}, top-5 {top5:.1%}")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
