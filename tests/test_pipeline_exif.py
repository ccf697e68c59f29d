"""EXIF cleaning on real camera files and on damaged EXIF blocks; no models needed."""
from __future__ import annotations

import json
import math
import random
import time
import tracemalloc

import pytest
from exifread.core.ifd_tag import IfdTag
from exifread.tags.fields import FieldType
from exifread.utils import Ratio
from PIL import Image

from app_tier.pipeline.exif import (
    MAX_BLOCK_BYTES, MAX_TEXT_CHARS, clean_metadata, created_at, exif_block, gps, human_size, read_tags,
)
from app_tier.pipeline.pipeline import _empty_metadata
from app_tier.pipeline.records import METADATA_BUDGET_BYTES
from tests.hostile_images import (
    ASCII, MAKE, SHORT, ascii_entry, entry, insert_png_chunks, jpeg_with_exif, png_with_exif, tiff_block,
)
from tests.pipeline_fixtures import SAMPLES, encoded, png_chunk, sample


def tag(values) -> IfdTag:
    """A tag as exifread builds it: strings are ASCII fields, lists of Ratio are RATIONAL ones."""
    kind = FieldType.ASCII if isinstance(values, str) else FieldType.RATIO if isinstance(values[0], Ratio) \
        else FieldType.BYTE
    return IfdTag(str(values), 0, kind, values, 0, 0)


@pytest.mark.parametrize("relative, make, model, when", [
    ("jpg/Canon_40D.jpg", "Canon", "Canon EOS 40D", "2008-05-30T15:56:01"),
    ("jpg/Nikon_D70.jpg", "NIKON CORPORATION", "NIKON D70", "2008-03-15T09:52:01"),
    ("jpg/Pentax_K10D.jpg", "PENTAX Corporation", "PENTAX K10D", "2008-05-04T16:47:24"),
    ("jpg/tests/36-memory_error.jpg", "CASIO COMPUTER CO.,LTD.", "EX-M2", "2002-04-21T00:30:33"),
])
def test_camera_files_give_trimmed_names_and_iso_times(relative, make, model, when):
    meta = clean_metadata(read_tags(sample(relative), "JPEG"))
    assert (meta["camera_make"], meta["camera_model"], meta["created_at"]) == (make, model, when)


@pytest.mark.parametrize("path", sorted((SAMPLES / "jpg" / "invalid").glob("*.jpg")), ids=lambda p: p.name)
def test_broken_exif_blocks_give_empty_metadata(path):
    assert clean_metadata(read_tags(path.read_bytes(), "JPEG")) == {
        "created_at": None, "gps": None, "camera_make": None, "camera_model": None, "orientation": None}


def test_random_damage_to_an_exif_block_never_raises_or_hangs():
    original = sample("jpg/Canon_40D.jpg")
    rng = random.Random(546)
    for _ in range(150):
        damaged = bytearray(original)
        for _ in range(rng.randint(1, 20)):
            damaged[rng.randint(2, 2000)] = rng.randrange(256)
        started = time.monotonic()
        clean_metadata(read_tags(bytes(damaged), "JPEG"))
        assert time.monotonic() - started < 2


def test_creation_time_falls_back_and_keeps_an_offset():
    tags = {"EXIF DateTimeOriginal": tag("0000:00:00 00:00:00"),
            "EXIF DateTimeDigitized": tag("2021:06:01 08:30:00"), "EXIF OffsetTimeDigitized": tag("+02:00"),
            "Image DateTime": tag("2021:06:02 10:00:00")}
    assert created_at(tags) == "2021-06-01T08:30:00+02:00"
    assert created_at({}) is None


def test_southern_western_gps_with_altitude_below_sea_level():
    tags = {"GPS GPSLatitude": tag([Ratio(33, 1), Ratio(51, 1), Ratio(3514, 100)]),
            "GPS GPSLatitudeRef": tag("S"),
            "GPS GPSLongitude": tag([Ratio(151, 1), Ratio(12, 1), Ratio(3012, 100)]),
            "GPS GPSLongitudeRef": tag("W"),
            "GPS GPSAltitude": tag([Ratio(125, 10)]), "GPS GPSAltitudeRef": tag([1])}
    found = gps(tags)
    assert found["latitude"] == {"degrees": 33.0, "minutes": 51.0, "seconds": 35.14, "direction": "S"}
    assert found["latitude_decimal"] == pytest.approx(-(33 + 51 / 60 + 35.14 / 3600), abs=1e-7)
    assert found["longitude_decimal"] < 0 and found["altitude_m"] == -12.5


def test_gps_with_a_zero_denominator_is_dropped():
    tags = {"GPS GPSLatitude": tag([Ratio(33, 0), Ratio(0, 1), Ratio(0, 1)]), "GPS GPSLatitudeRef": tag("N"),
            "GPS GPSLongitude": tag([Ratio(1, 1), Ratio(0, 1), Ratio(0, 1)]), "GPS GPSLongitudeRef": tag("E")}
    assert gps(tags) is None


@pytest.mark.parametrize("size, text", [(0, "0 B"), (812, "812 B"), (48_213, "48.2 kB"), (999_960, "1.0 MB"),
                                        (2_345_678, "2.3 MB"), (5 * 10**12, "5.0 TB")])
def test_human_sizes_use_decimal_units(size, text):
    assert human_size(size) == text


def test_strings_are_clipped_and_the_longest_metadata_fits_its_budget():
    widest = "\U0001d538" * 100_000          # 4 bytes in UTF-8, 12 as a JSON escape
    tags = {name: tag(widest) for name in ("Image Make", "Image Model", "EXIF DateTimeOriginal",
                                           "EXIF OffsetTimeOriginal")}
    tags.update({"GPS GPSLatitudeRef": tag("S"), "GPS GPSLongitudeRef": tag("W"),
                 "GPS GPSLatitude": tag([Ratio(2**32 - 1, 2**32 - 1), Ratio(1, 3), Ratio(2**32 - 2, 2**32 - 1)]),
                 "GPS GPSLongitude": tag([Ratio(179, 1), Ratio(1, 7), Ratio(2**32 - 2, 2**32 - 1)]),
                 "GPS GPSAltitude": tag([Ratio(2**32 - 1, 3)])})
    found = clean_metadata(tags)
    assert found["camera_make"] == found["camera_model"] == "\U0001d538" * MAX_TEXT_CHARS
    assert found["gps"]["altitude_m"] > 1e9
    metadata = {**_empty_metadata(b"x" * 10**7), **found, "width": 2**31, "height": 2**31, "format": "JPEG 2000"}
    for ensure_ascii in (True, False):
        assert len(json.dumps(metadata, ensure_ascii=ensure_ascii).encode()) <= METADATA_BUDGET_BYTES


def test_a_million_character_make_is_read_quickly_and_clipped():
    data = png_with_exif(Image.new("RGB", (8, 8)), tiff_block([ascii_entry(MAKE, "A" * 1_000_000)]))
    started = time.monotonic()
    assert clean_metadata(read_tags(data, "PNG"))["camera_make"] == "A" * MAX_TEXT_CHARS
    assert time.monotonic() - started < 1


def test_entries_that_all_claim_one_region_cannot_blow_up_memory():
    # Without the read budget exifread copies the 40 KB region for every one of 1500 entries (60 MB,
    # more with its printable copies); a 10 MB upload built this way would take gigabytes.
    entries = [entry(0x4000 + i, ASCII, "extra", count=40_000) for i in range(1500)]
    entries += [entry(0x6000 + i, SHORT, "extra", count=999) for i in range(1500)]
    data = png_with_exif(Image.new("RGB", (8, 8)), tiff_block(entries, extra=b"Z" * 40_000))
    tracemalloc.start()
    try:
        read_tags(data, "PNG")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_the_exif_block_is_found_behind_other_segments_and_chunks():
    block = tiff_block([ascii_entry(MAKE, "Found")])
    jpeg = jpeg_with_exif(Image.new("RGB", (8, 8)), block)
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    behind_xmp = jpeg[:2] + b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp + jpeg[2:]
    assert exif_block(behind_xmp, "JPEG") == block
    png = encoded(Image.new("RGB", (8, 8)), "PNG")
    after_the_pixels = png[:-12] + png_chunk(b"eXIf", block) + png[-12:]
    assert exif_block(after_the_pixels, "PNG") == block
    assert clean_metadata(read_tags(after_the_pixels, "PNG"))["camera_make"] == "Found"


def test_no_or_broken_exif_gives_no_block():
    assert exif_block(encoded(Image.new("RGB", (8, 8)), "JPEG"), "JPEG") is None
    assert exif_block(encoded(Image.new("RGB", (8, 8)), "PNG"), "PNG") is None
    assert exif_block(b"\xff\xd8" + bytes(range(256)), "JPEG") is None
    assert exif_block(b"\x89PNG\r\n\x1a\n" + b"\xff" * 40, "PNG") is None


def test_a_huge_exif_chunk_is_clipped_to_a_jpeg_segment():
    huge = tiff_block([ascii_entry(MAKE, "B" * 500_000)])
    png = insert_png_chunks(encoded(Image.new("RGB", (8, 8)), "PNG"), [png_chunk(b"eXIf", huge)])
    assert exif_block(png, "PNG") == huge[:MAX_BLOCK_BYTES]


@pytest.mark.parametrize("latitude, longitude, kept", [
    ((90, 0, 0), (180, 0, 0), True),
    ((89, 59, 59.99), (179, 59, 59.99), True),
    ((90, 0, 0.01), (0, 0, 0), False),
    ((200, 0, 0), (10, 0, 0), False),
    ((10, 0, 0), (180, 0, 1), False),
    ((10, -5, 0), (10, 0, 0), False),
    ((math.nan, 0, 0), (10, 0, 0), False),
    ((10, 0, 0), (math.inf, 0, 0), False),
], ids=["poles-and-antimeridian", "just-inside", "past-the-pole", "200-degrees", "past-180", "negative-minutes",
        "nan", "infinity"])
def test_gps_off_the_globe_is_dropped(latitude, longitude, kept):
    tags = {"GPS GPSLatitude": tag(list(latitude)), "GPS GPSLatitudeRef": tag("N"),
            "GPS GPSLongitude": tag(list(longitude)), "GPS GPSLongitudeRef": tag("W")}
    found = gps(tags)
    assert (found is not None) == kept
    if kept:
        assert json.loads(json.dumps(found, allow_nan=False)) == found
