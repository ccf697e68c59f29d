"""EXIF cleaning on real camera files and on damaged EXIF blocks; no models needed."""
from __future__ import annotations

import random
import time

import pytest
from exifread.core.ifd_tag import IfdTag
from exifread.tags.fields import FieldType
from exifread.utils import Ratio

from app_tier.pipeline.exif import clean_metadata, created_at, gps, human_size, read_tags
from tests.pipeline_fixtures import SAMPLES, sample


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
