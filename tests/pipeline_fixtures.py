"""Shared helpers of the pipeline tests: the loaded pipeline (once per session) and real images as bytes."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from app_tier.pipeline import ImageInput
from testkit.parity import shared_pipeline  # noqa: F401 - the pipeline tests load it from here
from testkit.photos import SAMPLES, TESTDATA, photo  # noqa: F401 - re-exported for the pipeline tests

ORIENTATION = SAMPLES / "jpg" / "orientation"


def encoded(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def jpeg(name: str, quality: int = 90) -> bytes:
    return encoded(photo(name), "JPEG", quality=quality)


def item(data: bytes, name: str = "image") -> ImageInput:
    return ImageInput(id=name, data=data, filename=name)


def sample(relative: str) -> bytes:
    return (SAMPLES / relative).read_bytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming width x height greyscale pixels, with one compressed row of zeros."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = zlib.compress(b"\x00" * (width + 1))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", row)
            + png_chunk(b"IEND", b""))


def with_alpha(image: Image.Image) -> Image.Image:
    """The photo with its left half fully transparent."""
    rgba = image.convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[:, :rgba.width // 2] = 0
    rgba.putalpha(Image.fromarray(alpha, "L"))
    return rgba


def mean_abs_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference after bringing b to a's size (RGB)."""
    b = b.convert("RGB").resize(a.size, Image.Resampling.BILINEAR)
    return float(np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b, np.int16)).mean())
