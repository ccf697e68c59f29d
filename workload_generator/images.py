"""The photos a run sends: a folder of JPEG/PNG files, or real photos built in."""
from __future__ import annotations

import csv
import io
import itertools
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})

# What the service's detector finds in the built-in photos (checked against the
# COCO SSD model the workers run). rocket has no entry on purpose: no COCO class
# fits it, so the run sends it but leaves it out of the correct/wrong count.
BUILTIN_GROUND_TRUTH = {
    "chelsea": "cat",
    "coffee": "cup",
    "astronaut": "person",
    "stereo_motorcycle": "motorcycle",
}
_HEADER_NAMES = frozenset({"name", "image", "file", "filename", "image name"})
BUILTIN_NAMES = ("chelsea", "coffee", "astronaut", "stereo_motorcycle", "rocket")


def file_stem(filename: str) -> str:
    """File name without its last extension: the key of ground truth and of `name:label` answers."""
    return filename.rsplit(".", 1)[0]


@dataclass(frozen=True)
class ImageFile:
    """One photo to upload: a file name and either bytes or a path read on demand."""

    filename: str
    data: bytes | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        """File name without extension: the key of ground truth and of `name:label` answers."""
        return file_stem(self.filename)

    def read(self) -> bytes:
        """The file's bytes (read each time for folder files, so big folders stay on disk)."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    @property
    def content_type(self) -> str:
        return "image/png" if self.filename.lower().endswith(".png") else "image/jpeg"


def folder_images(folder: str | Path) -> list[ImageFile]:
    """JPEG and PNG files directly in folder, sorted by name; raise when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no .jpg, .jpeg or .png files in {root}")
    return [ImageFile(p.name, path=p) for p in files]


def _skimage_photo(name: str):
    """The RGB array of one skimage.data photo (stereo_motorcycle is a pair: take the left)."""
    from skimage import data  # imported late: only built-in runs need scikit-image

    photo = getattr(data, name)()
    return photo[0] if name == "stereo_motorcycle" else photo


@lru_cache(maxsize=None)
def builtin_images() -> tuple[ImageFile, ...]:
    """The five skimage.data photos as JPEG files in memory."""
    from PIL import Image

    images = []
    for name in BUILTIN_NAMES:
        buffer = io.BytesIO()
        Image.fromarray(_skimage_photo(name)).convert("RGB").save(buffer, "JPEG", quality=90)
        images.append(ImageFile(f"{name}.jpg", data=buffer.getvalue()))
    return tuple(images)


def plan(images: list[ImageFile] | tuple[ImageFile, ...], count: int | None) -> list[ImageFile]:
    """count images taken in order, cycling when count exceeds the images; None: each once."""
    if count is None:
        return list(images)
    return list(itertools.islice(itertools.cycle(images), count)) if images else []


def parse_ground_truth(lines) -> dict[str, str]:
    """Parse `name,label` lines (name with or without extension); skip blanks, # comments, a header."""
    truth: dict[str, str] = {}
    rows = csv.reader(line for line in lines if line.strip() and not line.lstrip().startswith("#"))
    for number, row in enumerate(rows):
        if len(row) < 2:
            raise ValueError(f"ground truth line {row!r} is not name,label")
        name, label = row[0].strip(), row[1].strip()
        if number == 0 and name.lower() in _HEADER_NAMES:
            continue
        truth[name.rsplit(".", 1)[0] if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name] = label
    return truth


def read_ground_truth(path: str | Path) -> dict[str, str]:
    """Ground truth from a CSV file of `name,label` lines."""
    with open(path, newline="", encoding="utf-8") as handle:
        truth = parse_ground_truth(handle)
    logger.info("read %s ground-truth labels from %s", len(truth), path)
    return truth
