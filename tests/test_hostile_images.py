"""A corpus of hostile images through the real pipeline, each with the answer it must get.

Every image is made here (Pillow, numpy, struct) or is one of the shared real test files. The
whole corpus goes through Pipeline.submit/collect as the worker calls them, with warnings
turned into errors, so that no Pillow or exifread warning can change an answer. For each case:
an Outcome comes back (collect never raises), its status and code are the expected ones,
SUCCEEDED thumbnails look like the upright picture, and no metadata exceeds the byte budget.
"""
from __future__ import annotations

import io
import json
import logging
import math
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from app_tier.pipeline import (
    CORRUPT_IMAGE, FAILED, IMAGE_TOO_LARGE, SUCCEEDED, TIMEOUT, UNSUPPORTED_FORMAT, ImageInput, Outcome,
)
from app_tier.pipeline.decode import open_checked
from app_tier.pipeline.errors import MAX_MESSAGE_CHARS, StageError
from app_tier.pipeline.exif import MAX_TEXT_CHARS
from app_tier.pipeline.records import METADATA_BUDGET_BYTES
from tests.hostile_images import (
    ASCII, DATETIME_ORIGINAL, DOUBLE, GPS_LATITUDE, GPS_LATITUDE_REF, GPS_LONGITUDE, GPS_LONGITUDE_REF, LONG, MAKE,
    MODEL, ORIENTATION, PNG_SIGNATURE, ascii_entry, blank_png_of, chained_ifds, entry, gps_entries, insert_png_chunks,
    jpeg_claiming, jpeg_with_exif, png_claiming, png_with_exif, rational_entry, raw_png, replace_png_chunk,
    short_entry, tiff_block,
)
from tests.pipeline_fixtures import SAMPLES, encoded, mean_abs_difference, photo, png_bomb, png_chunk, shared_pipeline

pytestmark = pytest.mark.slow  # real pipeline

CAT = photo("chelsea").resize((300, 200))
COFFEE = photo("coffee").resize((300, 200))
SIXTEEN = np.asarray(CAT).astype(np.uint16) * 257          # the cat at 16 bits per sample
GREY16 = np.asarray(CAT.convert("L")).astype(np.uint16) * 257
RNG_BYTES = np.random.default_rng(546).integers(0, 256, 20_000, dtype=np.uint8).tobytes()


@dataclass(frozen=True)
class Case:
    """One hostile image and its answer: code None means SUCCEEDED."""

    name: str
    make: Callable[[], bytes]
    code: str | None = None
    fragment: str = ""                                      # in the error message of a FAILED case
    upright: Callable[[], Image.Image] | None = None        # what the thumbnail must look like
    metadata: dict = field(default_factory=dict)            # metadata entries the outcome must have
    settings: dict = field(default_factory=dict)            # PipelineSettings overrides for this case
    alpha: bool = False                                     # a PNG thumbnail with real transparency


def cat() -> Image.Image:
    return CAT


def stored_for(orientation: int) -> Image.Image:
    """The cat as a camera stores it when the EXIF orientation says how to turn it upright."""
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    return CAT.transpose(undo[orientation])


def cat_jpeg_with(block: bytes, image: Image.Image = CAT) -> Callable[[], bytes]:
    return lambda: jpeg_with_exif(image, block)


def half_transparent(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[:, :rgba.width // 2] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def palette_with_transparent_half() -> bytes:
    """A palette PNG whose left half uses index 255, which tRNS makes transparent."""
    indexed = CAT.quantize(colors=200)
    pixels = np.asarray(indexed).copy()
    pixels[:, :pixels.shape[1] // 2] = 255
    image = Image.fromarray(pixels, "P")
    image.putpalette(indexed.getpalette()[:600] + [0, 0, 0] * 56)
    return encoded(image, "PNG", transparency=255)


def colour_keyed_rgb() -> bytes:
    """An RGB PNG whose left half is pure green, the colour tRNS marks transparent."""
    pixels = np.asarray(CAT).copy()
    pixels[:, :pixels.shape[1] // 2] = (0, 255, 0)
    return encoded(Image.fromarray(pixels), "PNG", transparency=(0, 255, 0))


def apng(frames: list[Image.Image], **options) -> bytes:
    return encoded(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100, **options)


def apng_claiming_frames(count: int) -> bytes:
    """An animated PNG whose acTL chunk claims `count` frames (Pillow then falls back to the default image)."""
    data = apng([CAT, COFFEE])
    return replace_png_chunk(data, b"acTL", struct.pack(">II", count, 0))


def apng_with_oversized_frame() -> bytes:
    """The second frame's fcTL claims a 100000x100000 region of a 300x200 canvas."""
    data = apng([CAT, COFFEE])
    second = data.index(b"fcTL", data.index(b"fcTL") + 4) - 4
    length = struct.unpack(">I", data[second:second + 4])[0]
    body = bytearray(data[second + 8:second + 8 + length])
    body[4:12] = struct.pack(">II", 100_000, 100_000)
    chunk = png_chunk(b"fcTL", bytes(body))
    return data[:second] + chunk + data[second + 12 + length:]


def iccp_chunk(profile: bytes) -> bytes:
    return png_chunk(b"iCCP", b"hostile\x00\x00" + zlib.compress(profile))


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def lab_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def shared(relative: str) -> Callable[[], bytes]:
    return lambda: (SAMPLES / relative).read_bytes()


def shared_upright(relative: str) -> Callable[[], Image.Image]:
    """A shared photo as Pillow decodes and turns it, independently of the pipeline."""
    def upright():
        image = Image.open(SAMPLES / relative)
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    return upright


def uniform(image: Image.Image) -> bool:
    return all(low == high for low, high in image.convert("RGB").getextrema())


def solid(colour) -> Callable[[], Image.Image]:
    return lambda: Image.new("RGB", (8, 8), colour)


# A shared region the amplification entries all point at (each entry claims all of it).
_AMPLIFIED = tiff_block([entry(0x4000 + i, ASCII, "extra", count=40_000) for i in range(1500)], extra=b"Z" * 40_000)
_CHAIN = 2000                       # IFDs chained one after the other, each naming a camera
_NO_EXIF = {"camera_make": None, "camera_model": None, "gps": None, "created_at": None}

CASES = [
    # --- decompression bombs: small files whose headers claim huge pictures
    Case("png-bomb-10-gigapixels", png_bomb, IMAGE_TOO_LARGE, "has 10,000.0 megapixels"),
    Case("png-bomb-100-megapixels", lambda: png_bomb(10_000, 10_000), IMAGE_TOO_LARGE,
         "is 10000x10000 (100.0 megapixels); the limit is 50.0"),
    Case("png-bomb-64-megapixels", lambda: png_bomb(8_000, 8_000), IMAGE_TOO_LARGE, "is 8000x8000"),
    Case("png-bomb-one-endless-row", lambda: png_claiming(2**31 - 1, 1), IMAGE_TOO_LARGE, "has 2,147.5 megapixels"),
    Case("png-claims-60-megapixels-holds-4-kb", lambda: png_claiming(6_000, 10_000), IMAGE_TOO_LARGE,
         "60.0 megapixels"),
    Case("png-claims-40-megapixels-holds-4-kb", lambda: png_claiming(5_000, 8_000), CORRUPT_IMAGE, "truncated"),
    Case("jpeg-bomb-65500-square", lambda: jpeg_claiming(65_500, 65_500), IMAGE_TOO_LARGE,
         "has 4,290.2 megapixels"),
    Case("jpeg-bomb-144-megapixels", lambda: jpeg_claiming(12_000, 12_000), IMAGE_TOO_LARGE,
         "is 12000x12000 (144.0 megapixels)"),
    Case("jpeg-claims-49-megapixels-has-16x16", lambda: jpeg_claiming(7_000, 7_000), CORRUPT_IMAGE, "truncated"),
    Case("png-49-megapixels-of-zeros-in-60-kb", lambda: blank_png_of(7_000, 7_000), upright=solid((0, 0, 0)),
         metadata={"width": 7_000, "height": 7_000}),
    Case("png-25-megapixels-over-a-tight-budget", lambda: blank_png_of(5_000, 5_000), TIMEOUT, "0.02 s",
         settings={"image_timeout_s": 0.02}),
    Case("png-claims-zero-size", lambda: blank_png_of(0, 0), CORRUPT_IMAGE, "cannot be read as PNG"),
    Case("jpeg-claims-zero-height", lambda: jpeg_claiming(100, 0), CORRUPT_IMAGE, "cannot be read as JPEG"),
    # --- unusual modes and encodings, all to RGB before the models
    Case("png-16-bit-rgb", lambda: raw_png(SIXTEEN, 2, 16), upright=cat),
    Case("png-16-bit-rgba-half-transparent",
         lambda: raw_png(np.dstack([SIXTEEN, np.asarray(half_transparent(CAT))[..., 3].astype(np.uint16) * 257]),
                         6, 16), upright=lambda: half_transparent(CAT), alpha=True),
    Case("png-16-bit-grey", lambda: raw_png(GREY16, 0, 16), upright=lambda: CAT.convert("L")),
    Case("png-16-bit-grey-opaque-alpha", lambda: raw_png(np.dstack([GREY16, np.full(GREY16.shape, 65535)]), 4, 16),
         upright=lambda: CAT.convert("L")),
    Case("png-1-bit", lambda: encoded(CAT.convert("1"), "PNG"), upright=lambda: CAT.convert("1")),
    Case("jpeg-cmyk", lambda: encoded(CAT.convert("CMYK"), "JPEG", quality=95), upright=cat),
    Case("jpeg-cmyk-with-an-rgb-profile", lambda: encoded(CAT.convert("CMYK"), "JPEG", icc_profile=srgb_profile()),
         upright=cat),
    Case("jpeg-grey", lambda: encoded(CAT.convert("L"), "JPEG"), upright=lambda: CAT.convert("L")),
    Case("jpeg-progressive", lambda: encoded(CAT, "JPEG", progressive=True), upright=cat),
    Case("png-interlaced-adam7", lambda: raw_png(np.asarray(CAT), 2, 8, interlaced=True), upright=cat),
    Case("png-palette-with-transparency", palette_with_transparent_half, upright=lambda: half_transparent(CAT),
         alpha=True),
    Case("png-palette-transparency-unused", lambda: encoded(CAT.quantize(colors=64), "PNG", transparency=70),
         upright=cat),
    Case("png-rgb-colour-key-transparency", colour_keyed_rgb, upright=lambda: half_transparent(CAT), alpha=True),
    Case("png-grey-alpha", lambda: encoded(half_transparent(CAT).convert("LA"), "PNG"),
         upright=lambda: half_transparent(CAT.convert("L")), alpha=True),
    Case("apng-three-frames-gives-the-first", lambda: apng([CAT, CAT.rotate(180), COFFEE]), upright=cat),
    Case("apng-default-image-outside-the-animation",
         lambda: apng([CAT, COFFEE, COFFEE.rotate(180)], default_image=True), upright=cat),
    Case("apng-claims-two-billion-frames", lambda: apng_claiming_frames(2**31), upright=cat),
    Case("apng-frame-larger-than-its-canvas", apng_with_oversized_frame, upright=cat),
    # --- extreme shapes
    Case("png-1x1", lambda: encoded(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), upright=solid((200, 30, 30))),
    Case("jpeg-1x1", lambda: encoded(Image.new("RGB", (1, 1), (30, 200, 30)), "JPEG"), upright=solid((30, 200, 30))),
    Case("png-1x60000", lambda: encoded(Image.new("L", (1, 60_000), 90), "PNG"), upright=solid((90, 90, 90)),
         metadata={"width": 1, "height": 60_000}),
    Case("jpeg-20000x1", lambda: encoded(Image.new("RGB", (20_000, 1), (0, 0, 250)), "JPEG"),
         upright=solid((0, 0, 250)), metadata={"width": 20_000, "height": 1}),
    # --- colour profiles
    Case("jpeg-3-mb-garbage-icc-profile", lambda: encoded(CAT, "JPEG", icc_profile=RNG_BYTES * 150), upright=cat),
    Case("jpeg-malformed-icc-profile", lambda: encoded(CAT, "JPEG", icc_profile=b"acsp" + RNG_BYTES[:3000]),
         upright=cat),
    Case("jpeg-truncated-srgb-profile", lambda: encoded(CAT, "JPEG", icc_profile=srgb_profile()[:200]), upright=cat),
    Case("jpeg-lab-profile-on-rgb-pixels", lambda: encoded(CAT, "JPEG", icc_profile=lab_profile()), upright=cat),
    Case("png-iccp-not-zlib", lambda: insert_png_chunks(encoded(CAT, "PNG"), [
        png_chunk(b"iCCP", b"broken\x00\x00" + RNG_BYTES[:500])]), upright=cat),
    Case("png-iccp-of-2-mb", lambda: insert_png_chunks(encoded(CAT, "PNG"), [iccp_chunk(b"\x00" * 2_000_000)]),
         CORRUPT_IMAGE, "too large"),
    # --- hostile EXIF: huge strings and counts, loops, out-of-range values
    # The block is read up to its first 64 KiB: the model, stored after the make, is out of reach.
    Case("png-exif-make-of-a-million-characters", lambda: png_with_exif(CAT, tiff_block([
        ascii_entry(MAKE, "A" * 1_000_000), ascii_entry(MODEL, "Model")])), upright=cat,
         metadata={"camera_make": "A" * MAX_TEXT_CHARS, "camera_model": None}),
    Case("png-exif-model-of-300-characters", lambda: png_with_exif(CAT, tiff_block([
        ascii_entry(MODEL, "M" * 300)])), upright=cat, metadata={"camera_model": "M" * MAX_TEXT_CHARS}),
    Case("jpeg-exif-make-fills-the-segment", cat_jpeg_with(tiff_block([ascii_entry(MAKE, "B" * 65_000)])),
         upright=cat, metadata={"camera_make": "B" * MAX_TEXT_CHARS}),
    Case("exif-make-claims-4-billion-characters", cat_jpeg_with(tiff_block([
        ascii_entry(MAKE, "Canon", count=0xFFFFFFFF), ascii_entry(MODEL, "EOS")])), upright=cat,
         metadata={"camera_make": "Canon", "camera_model": "EOS"}),
    Case("exif-orientation-claims-4-billion-values", cat_jpeg_with(tiff_block([
        short_entry(ORIENTATION, 6, count=0xFFFFFFFF)])), upright=cat, metadata={"orientation": None}),
    Case("exif-gps-claims-a-billion-rationals", cat_jpeg_with(tiff_block([], gps=[
        ascii_entry(GPS_LATITUDE_REF, "N"), rational_entry(GPS_LATITUDE, (1, 1), count=2**30),
        ascii_entry(GPS_LONGITUDE_REF, "E"), rational_entry(GPS_LONGITUDE, (1, 1), (0, 1), (0, 1))])),
         upright=cat, metadata={"gps": None}),
    Case("exif-1500-entries-amplify-one-region", lambda: png_with_exif(CAT, _AMPLIFIED), upright=cat),
    Case("exif-5000-distinct-tags", cat_jpeg_with(tiff_block(
        [ascii_entry(MAKE, "Many")] + [short_entry(0x5000 + i, i) for i in range(5000)])), upright=cat,
         metadata={"camera_make": "Many"}),
    Case("exif-ifd-points-to-itself", cat_jpeg_with(tiff_block([ascii_entry(MAKE, "Loop")], next_ifd="ifd0")),
         upright=cat, metadata={"camera_make": "Loop"}),
    Case("exif-sub-ifds-point-back-at-ifd0", cat_jpeg_with(tiff_block([
        ascii_entry(MAKE, "Back"), entry(0x8769, LONG, "ifd0"), entry(0x8825, LONG, "ifd0")])),
         upright=cat, metadata={"camera_make": "Back", "gps": None}),
    Case("exif-2000-chained-ifds", lambda: png_with_exif(CAT, chained_ifds(_CHAIN)), upright=cat,
         metadata={"camera_make": "Chain 0"}),
    Case("exif-ifd-offset-beyond-the-block", cat_jpeg_with(b"II*\x00" + struct.pack("<I", 0xFFFFFFF0)),
         upright=cat, metadata=_NO_EXIF),
    Case("exif-block-that-is-not-tiff", cat_jpeg_with(RNG_BYTES[:4000]), upright=cat, metadata=_NO_EXIF),
    Case("exif-orientation-0", cat_jpeg_with(tiff_block([short_entry(ORIENTATION, 0)])), upright=cat,
         metadata={"orientation": None}),
    Case("exif-orientation-9", cat_jpeg_with(tiff_block([short_entry(ORIENTATION, 9)])), upright=cat,
         metadata={"orientation": None}),
    Case("exif-orientation-65535", cat_jpeg_with(tiff_block([short_entry(ORIENTATION, 65535)])), upright=cat,
         metadata={"orientation": None}),
    Case("exif-orientation-as-text", cat_jpeg_with(tiff_block([ascii_entry(ORIENTATION, "6")])), upright=cat,
         metadata={"orientation": None}),
    Case("exif-orientation-6-is-applied", cat_jpeg_with(tiff_block([short_entry(ORIENTATION, 6)]), stored_for(6)),
         upright=cat, metadata={"orientation": 6, "width": 300, "height": 200}),
    Case("png-exif-orientation-3-is-applied", lambda: png_with_exif(stored_for(3), tiff_block([
        short_entry(ORIENTATION, 3)])), upright=cat, metadata={"orientation": 3}),
    Case("exif-gps-latitude-200-degrees", cat_jpeg_with(tiff_block([], gps=gps_entries(
        [(200, 1), (0, 1), (0, 1)], [(10, 1), (0, 1), (0, 1)]))), upright=cat, metadata={"gps": None}),
    Case("exif-gps-longitude-minus-181", cat_jpeg_with(tiff_block([], gps=[
        ascii_entry(GPS_LATITUDE_REF, "N"), rational_entry(GPS_LATITUDE, (10, 1), (0, 1), (0, 1)),
        ascii_entry(GPS_LONGITUDE_REF, "W"), rational_entry(GPS_LONGITUDE, (181, 1), (0, 1), (0, 1))])),
         upright=cat, metadata={"gps": None}),
    Case("exif-gps-zero-denominators", cat_jpeg_with(tiff_block([], gps=gps_entries(
        [(20, 0), (0, 0), (0, 0)], [(10, 1), (0, 0), (0, 1)]))), upright=cat, metadata={"gps": None}),
    Case("exif-gps-not-a-number", cat_jpeg_with(tiff_block([], gps=[
        ascii_entry(GPS_LATITUDE_REF, "N"), entry(GPS_LATITUDE, DOUBLE, struct.pack("<3d", math.nan, 0, 0)),
        ascii_entry(GPS_LONGITUDE_REF, "E"), entry(GPS_LONGITUDE, DOUBLE, struct.pack("<3d", math.inf, 0, 0))])),
         upright=cat, metadata={"gps": None}),
    Case("exif-gps-valid-control", cat_jpeg_with(tiff_block([], gps=gps_entries(
        [(51, 1), (30, 1), (0, 1)], [(0, 1), (7, 1), (3915, 100)]))), upright=cat),
    Case("exif-date-of-a-million-characters", lambda: png_with_exif(CAT, tiff_block([], exif=[
        ascii_entry(DATETIME_ORIGINAL, "2021:06:01 08:30:00" + "9" * 1_000_000)])), upright=cat,
         metadata={"created_at": "2021-06-01T08:30:00"}),
    Case("exif-make-not-utf8", cat_jpeg_with(tiff_block([ascii_entry(MAKE, b"\xff\xfe\xc3")])), upright=cat,
         metadata={"camera_make": None}),
    # --- magic bytes and garbage, truncation
    Case("png-magic-then-garbage", lambda: PNG_SIGNATURE + RNG_BYTES, CORRUPT_IMAGE, "PNG"),
    Case("jpeg-magic-then-garbage", lambda: b"\xff\xd8\xff" + RNG_BYTES, CORRUPT_IMAGE, "JPEG"),
    Case("png-signature-only", lambda: PNG_SIGNATURE, CORRUPT_IMAGE, "PNG"),
    Case("jpeg-start-and-end-only", lambda: b"\xff\xd8\xff\xd9", CORRUPT_IMAGE, "JPEG"),
    Case("png-idat-not-zlib", lambda: replace_png_chunk(encoded(CAT, "PNG"), b"IDAT", RNG_BYTES[:3000]),
         CORRUPT_IMAGE, "PNG"),
    Case("png-header-crc-wrong", lambda: encoded(CAT, "PNG")[:29] + b"\x00\x00\x00\x00" + encoded(CAT, "PNG")[33:],
         CORRUPT_IMAGE, "PNG"),
    Case("png-bit-depth-3", lambda: raw_png(np.zeros((4, 4), np.uint8), 0, 8)[:24] + b"\x03"
         + raw_png(np.zeros((4, 4), np.uint8), 0, 8)[25:], CORRUPT_IMAGE, "PNG"),
    Case("jpeg-truncated-in-half", lambda: encoded(CAT, "JPEG")[:len(encoded(CAT, "JPEG")) // 2], CORRUPT_IMAGE,
         "truncated"),
    Case("png-truncated-in-half", lambda: encoded(CAT, "PNG")[:len(encoded(CAT, "PNG")) // 2], CORRUPT_IMAGE,
         "PNG"),
    Case("gif-magic-then-garbage", lambda: b"GIF89a" + RNG_BYTES[:100], UNSUPPORTED_FORMAT, "GIF"),
    # --- the shared real files
    Case("real-corrupted-jpeg", shared("jpg/corrupted.jpg"), upright=shared_upright("jpg/corrupted.jpg")),
    *[Case(f"real-invalid-{p.name}", shared(f"jpg/invalid/{p.name}"), upright=shared_upright(f"jpg/invalid/{p.name}"))
      for p in sorted((SAMPLES / "jpg" / "invalid").glob("*.jpg"))],
    Case("real-35-empty", shared("jpg/tests/35-empty.jpg"), upright=shared_upright("jpg/tests/35-empty.jpg")),
    Case("real-36-memory-error", shared("jpg/tests/36-memory_error.jpg"),
         upright=shared_upright("jpg/tests/36-memory_error.jpg"), metadata={"camera_model": "EX-M2"}),
    Case("real-tiff", shared("tiff/Arbitro.tiff"), UNSUPPORTED_FORMAT, "TIFF images are not supported"),
    Case("real-heif", shared("heic/samplefilehub.heif"), UNSUPPORTED_FORMAT, "HEIF images are not supported"),
]


@pytest.fixture(scope="module")
def pipeline():
    return shared_pipeline()


@pytest.fixture(scope="module")
def answers(pipeline) -> dict[str, Outcome]:
    """Every case through submit/collect as the worker calls them, with warnings turned into errors."""
    found = {}
    groups: dict[tuple, list[Case]] = {}
    for case in CASES:
        groups.setdefault(tuple(sorted(case.settings.items())), []).append(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for overrides, cases in groups.items():
            runner = pipeline.with_settings(replace(pipeline.settings, **dict(overrides)))
            inputs = [ImageInput(id=case.name, data=case.make(), filename=f"{case.name}.jpg") for case in cases]
            pending = [runner.submit(chunk) for chunk in runner.chunks(inputs)]
            for outcome in (o for p in pending for o in runner.collect(p)):
                found[outcome.id] = outcome
    return found


def test_the_corpus_is_large_and_named_uniquely():
    assert len(CASES) >= 40 and len({case.name for case in CASES}) == len(CASES)
    codes = {case.code for case in CASES}
    assert {None, UNSUPPORTED_FORMAT, CORRUPT_IMAGE, IMAGE_TOO_LARGE, TIMEOUT} <= codes


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_image_gets_its_answer(answers, case):
    outcome = answers[case.name]
    assert isinstance(outcome, Outcome) and outcome.id == case.name
    if case.code is None:
        assert outcome.status == SUCCEEDED, outcome.error
        assert outcome.thumbnail and outcome.annotated and outcome.error is None
    else:
        assert (outcome.status, outcome.error["code"]) == (FAILED, case.code), outcome.error
        assert case.fragment in outcome.error["message"]
        assert outcome.thumbnail is None and outcome.labels == []
    for key, value in case.metadata.items():
        assert outcome.metadata[key] == value, key


@pytest.mark.parametrize("case", [c for c in CASES if c.code is None], ids=lambda case: case.name)
def test_succeeded_thumbnail_is_upright(answers, case):
    outcome = answers[case.name]
    thumbnail = Image.open(io.BytesIO(outcome.thumbnail))
    reference = case.upright()
    assert max(thumbnail.size) <= 250
    landscape = outcome.metadata["width"] >= outcome.metadata["height"]
    assert (thumbnail.width >= thumbnail.height) == landscape
    difference = mean_abs_difference(on_white(thumbnail), on_white(reference))
    assert difference < 14
    if not uniform(reference):
        assert (reference.width >= reference.height) == landscape
        # The comparison can fail: the same picture upside down is far from it.
        assert mean_abs_difference(on_white(thumbnail), on_white(reference).rotate(180)) > difference + 10
    assert (outcome.thumbnail_content_type == "image/png") == case.alpha
    if case.alpha:
        alpha = np.asarray(thumbnail.getchannel("A"))
        assert alpha[:, :alpha.shape[1] // 3].max() < 10 and alpha[:, -alpha.shape[1] // 3:].min() > 245


def on_white(image: Image.Image) -> Image.Image:
    """The picture as a viewer shows it on a white page."""
    if image.mode not in ("RGBA", "LA"):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_metadata_and_result_stay_small(answers, case):
    outcome = answers[case.name]
    assert len(json.dumps(outcome.metadata).encode()) <= METADATA_BUDGET_BYTES
    fields = outcome.to_result_fields()
    assert json.loads(json.dumps(fields, allow_nan=False)) == fields
    if outcome.error:
        assert len(outcome.error["message"]) <= 1000


def test_library_warnings_are_logged_not_raised(pipeline, caplog):
    caplog.set_level(logging.INFO, logger="app_tier.pipeline.pipeline")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outcome, = pipeline.process([ImageInput(id="bomb", data=png_bomb(10_000, 10_000))])
    assert outcome.error["code"] == IMAGE_TOO_LARGE
    assert "image bomb: 1 warning(s) while processing, the first: DecompressionBombWarning" in caplog.text


def test_the_flattest_real_jpeg_is_not_taken_for_a_forged_header():
    # A flat grey picture with optimised Huffman tables needs the fewest bytes a baseline JPEG can have.
    data = encoded(Image.new("L", (8000, 6000), 128), "JPEG", quality=50, optimize=True)
    assert len(data) * 250 < 8000 * 6000 < len(data) * 256
    assert open_checked(data, "JPEG", 50_000_000).size == (8000, 6000)
    with pytest.raises(StageError) as forged:
        open_checked(data[:len(data) // 2] + b"\xff\xd9", "JPEG", 50_000_000)
    assert forged.value.code == CORRUPT_IMAGE and "most of its data is missing" in forged.value.message


def test_long_error_messages_are_clipped():
    error = StageError(CORRUPT_IMAGE, "x" * 5000)
    assert len(error.message) == MAX_MESSAGE_CHARS and error.message.endswith("...")
    assert StageError(CORRUPT_IMAGE, "short").message == "short"
