"""Open, check and decode an image once, upright and reduced to a working size for every later stage."""
from __future__ import annotations

import functools
import io
import logging
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps

from app_tier.pipeline.errors import CORRUPT_IMAGE, IMAGE_TOO_LARGE, StageError

log = logging.getLogger(__name__)

# What Pillow raises for damaged data; anything else is a bug and becomes INTERNAL_ERROR.
_DAMAGE = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)
_SIDEWAYS = {5, 6, 7, 8}          # EXIF orientations that swap width and height
_WHITE = (255, 255, 255)
_SRGB = ImageCms.createProfile("sRGB")
# Photos' profiles are a few KB (sRGB 3 KB, Display P3 0.5 KB, camera profiles with tables up
# to some 100 KB). Larger ones are not read: parsing is slow and each cached transform keeps
# its profile's bytes as the cache key (a JPEG can carry 16 MB of "profile").
_MAX_ICC_BYTES = 1024 * 1024
# Sequential Huffman coding spends at least one bit on each 8x8 block's DC code and one on its
# end of block, so a baseline JPEG needs a byte per 256 pixels at least. Only a flat grey picture
# with optimised tables comes near (255.8 pixels per byte at 8000x6000); photos have 1-20.
_MIN_PIXELS_PER_JPEG_BYTE = 256
_RGB_SPACE = b"RGB "                  # an ICC header's data colour space, bytes 16-19
_ARITHMETIC_SOF = (b"\xff\xc9", b"\xff\xca", b"\xff\xcb")  # arithmetic coding can do better than a bit


@dataclass
class Decoded:
    """The upright working image (longest side at most the working side) and facts about the original."""

    format: str
    width: int                    # full-resolution size after orientation
    height: int
    orientation: int | None       # the EXIF orientation Pillow applied
    rgb: Image.Image              # upright, RGB, alpha flattened onto white: models and annotation
    rgba: Image.Image | None      # upright with alpha, only when the image has real transparency


def open_checked(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse pixel bombs before a single pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        # Pillow's own hard limit (2 x MAX_IMAGE_PIXELS) fired while reading the header.
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"has {int(claimed.group(1)) / 1e6:,.1f} megapixels" if claimed else "is too large"
        raise StageError(IMAGE_TOO_LARGE, f"the image {size}; the limit is {max_pixels / 1e6:,.1f} megapixels") from None
    except Image.UnidentifiedImageError:
        # Its message names the BytesIO object, which says nothing to people.
        raise StageError(CORRUPT_IMAGE, f"the file starts like a {fmt} but cannot be read as {fmt}") from None
    except _DAMAGE as exc:
        raise StageError(CORRUPT_IMAGE, f"the {fmt} data is damaged and cannot be read ({exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise StageError(IMAGE_TOO_LARGE, f"the image is {width}x{height} ({width * height / 1e6:,.1f} "
                                          f"megapixels); the limit is {max_pixels / 1e6:,.1f} megapixels")
    if width < 1 or height < 1:
        raise StageError(CORRUPT_IMAGE, f"the image claims an empty size {width}x{height}")
    if fmt == "JPEG" and len(data) * _MIN_PIXELS_PER_JPEG_BYTE < width * height and _sequential_huffman(image, data):
        # libjpeg fills what is missing with grey and only warns, so the decode would "succeed".
        raise StageError(CORRUPT_IMAGE, f"the JPEG claims {width}x{height} pixels but holds only {len(data)} bytes: "
                                        "most of its data is missing (truncated or a forged header)")
    return image


def _sequential_huffman(image: Image.Image, data: bytes) -> bool:
    """Whether the JPEG is coded as baseline/extended sequential Huffman (searched only for suspect files)."""
    return not image.info.get("progressive") and not any(marker in data for marker in _ARITHMETIC_SOF)


def decode(image: Image.Image, working_side: int) -> Decoded:
    """Decode once (JPEGs at a reduced DCT scale), apply EXIF orientation, shrink to the working size."""
    # Pillow opens multi-picture JPEGs (stereo and some phone cameras) as MPO: still a JPEG.
    fmt = "JPEG" if image.format == "MPO" else image.format
    stored_size = image.size
    if fmt == "JPEG":
        _draft_for(image, working_side)
    try:
        image.load()
    except _DAMAGE as exc:
        # Pillow raises for truncated data (LOAD_TRUNCATED_IMAGES is left False on purpose):
        # half a photo padded with grey would be labelled and thumbnailed as if it were whole.
        raise StageError(CORRUPT_IMAGE, f"the {fmt} data is truncated or damaged ({exc})") from None
    orientation = _apply_orientation(image)
    width, height = stored_size[::-1] if orientation in _SIDEWAYS else stored_size
    icc = image.info.get("icc_profile")
    rgb, rgba = _normalise(image)
    rgb, rgba = (_to_srgb(fit_within(im, working_side), icc) if im is not None else None for im in (rgb, rgba))
    return Decoded(fmt, width, height, orientation, rgb, rgba)


def _draft_for(image: Image.Image, working_side: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the longest side stays >= half the working side.

    Half, not all of it: the reduced decode then lands within the working size for any JPEG
    up to 8x that size, so no resampling pass follows (the copy comes out 512-1024 px long
    at the default 1024); thumbnail (250) and model inputs (300, 224) still come from a
    larger picture.
    """
    floor = working_side // 2
    longest = max(image.size)
    scale = next((s for s in (8, 4, 2) if longest // s >= floor), 1)
    if scale > 1:
        image.draft(image.mode, (max(1, image.width // scale), max(1, image.height // scale)))


def _apply_orientation(image: Image.Image) -> int | None:
    """Turn the pixels upright in place; returns the orientation applied (None when absent or unreadable)."""
    try:
        orientation = image.getexif().get(0x0112)
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not fail an otherwise good image
        log.warning("EXIF orientation unreadable (%s); keeping the stored orientation", exc)
        return None
    return orientation if orientation in range(1, 9) else None


def _normalise(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """RGB for the models, plus RGBA when the image has transparency that is actually used."""
    if image.mode.startswith("I"):
        image = _sixteen_to_eight(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return (image if image.mode == "RGB" else image.convert("RGB")), None
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    if rgba.getchannel("A").getextrema() == (255, 255):
        return rgba.convert("RGB"), None
    flat = Image.new("RGB", rgba.size, _WHITE)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat, rgba


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert from an embedded colour profile to sRGB, which is what viewers and the models assume.

    Cameras and editors embed e.g. Apple's "Generic RGB" (gamma 1.8): left as is, such a photo
    looks too dark in the thumbnail and to the models.
    """
    if not icc:
        return image
    if len(icc) > _MAX_ICC_BYTES or icc[16:20] != _RGB_SPACE:
        # Other spaces (grey, CMYK, Lab) cannot describe the RGB pixels the conversion gets.
        log.info("embedded colour profile ignored: %s bytes, colour space %r", len(icc), icc[16:20])
        return image
    try:
        transform = _srgb_transform(icc, image.mode)
        return ImageCms.applyTransform(image, transform) if transform else image
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        log.warning("embedded colour profile unusable (%s); keeping the stored colours", exc)
        return image


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """None for sRGB profiles (nothing to do); cached, as photos from one camera share a profile."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if ImageCms.getProfileDescription(source).strip().lower().startswith("srgb"):
        return None
    return ImageCms.buildTransform(source, _SRGB, mode, mode)


def _sixteen_to_eight(image: Image.Image) -> Image.Image:
    """16-bit greyscale PNGs: keep the high byte (Pillow's convert would clip everything above 255)."""
    pixels = np.asarray(image, dtype=np.uint32) >> 8
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


def fit_within(image: Image.Image, side: int, resample: Image.Resampling = Image.Resampling.BICUBIC,
               reducing_gap: float = 2.0) -> Image.Image:
    """Fit into a side x side box, never enlarging; the input is left untouched.

    Pillow first shrinks by the largest whole factor that leaves at least `reducing_gap` times
    the target size (a cheap box average, Image.reduce), then resamples the rest of the way.
    """
    if max(image.size) <= side:
        return image
    ratio = side / max(image.size)
    size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    return image.resize(size, resample, reducing_gap=reducing_gap)
