"""EXIF metadata read with exifread and cleaned into the result's metadata schema."""
from __future__ import annotations

import io
import logging
import math
import struct
from datetime import datetime

import exifread

log = logging.getLogger(__name__)

# Creation time candidates, best first, each with the tag holding its UTC offset (EXIF 2.31).
_TIME_TAGS = (("EXIF DateTimeOriginal", "EXIF OffsetTimeOriginal"),
              ("EXIF DateTimeDigitized", "EXIF OffsetTimeDigitized"),
              ("Image DateTime", "EXIF OffsetTime"))
_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB")

# Bounds that keep a hostile EXIF block from making the result large or the reader slow.
# JPEG carries EXIF in one APP1 segment of at most 64 KiB, and the EXIF standard holds
# every format to that; PNG's eXIf chunk has no limit of its own, so it gets JPEG's.
MAX_BLOCK_BYTES = 64 * 1024
# exifread reads each entry's data wherever its offset points, so thousands of entries can
# all claim one large region; cap what it may read in all. Real blocks are read less than
# once (the embedded thumbnail, most of a block, is skipped); twice bounds memory and time.
MAX_READ_BYTES = 2 * MAX_BLOCK_BYTES
# Camera makes and models are at most a few dozen characters ("NIKON CORPORATION", "Canon
# EOS 5D Mark IV"); 256 leaves room for odd firmware while two of them stay within 2 KB of
# UTF-8, so no metadata dict can approach a DynamoDB item's 400 KB.
MAX_TEXT_CHARS = 256
_TIFF_ORDERS = (b"II", b"MM")
_JPEG_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}     # markers without a length field
_JPEG_PIXELS = {0xDA, 0xD9}                            # start of scan, end of image: no EXIF after


def read_tags(data: bytes, fmt: str) -> dict:
    """All EXIF tags exifread finds in the image's EXIF block; {} when there are none or the block is broken.

    exifread gets only the block (clipped to MAX_BLOCK_BYTES) and at most MAX_READ_BYTES of
    reads from it. details=False skips maker notes (the usual home of broken offsets and
    loops) and extract_thumbnail=False skips the embedded preview; strict=False (the default)
    makes exifread log and skip bad tags instead of raising.
    """
    block = exif_block(data, fmt)
    if block is None or block[:2] not in _TIFF_ORDERS:
        return {}
    try:
        return exifread.process_file(_BoundedReader(block), details=False, extract_thumbnail=False)
    except Exception as exc:  # noqa: BLE001 - metadata is optional; a broken block must not fail the image
        log.warning("EXIF block unreadable (%s: %s); metadata left empty", type(exc).__name__, exc)
        return {}


def exif_block(data: bytes, fmt: str) -> bytes | None:
    """The TIFF-structured EXIF block of a JPEG (APP1 "Exif") or PNG (eXIf chunk), clipped; None without one."""
    if fmt == "JPEG":
        return _jpeg_exif_block(data)
    if fmt == "PNG":
        return _png_exif_block(data)
    return None


def _jpeg_exif_block(data: bytes) -> bytes | None:
    """Walk the marker segments before the first scan; the payload of the first APP1 "Exif\\0\\0"."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None                      # not a marker where one must be: damaged, leave it to decode
        marker = data[position + 1]
        if marker == 0xFF:                   # fill byte before a marker
            position += 1
        elif marker in _JPEG_STANDALONE:
            position += 2
        elif marker in _JPEG_PIXELS:
            return None
        else:
            length = int.from_bytes(data[position + 2:position + 4], "big")
            if marker == 0xE1 and data[position + 4:position + 8] == b"Exif":
                return data[position + 10:position + 2 + min(length, MAX_BLOCK_BYTES)]
            position += 2 + length
    return None


def _png_exif_block(data: bytes) -> bytes | None:
    """Walk the chunks (about 80 in a 5 MB PNG); the body of the first eXIf chunk.

    Faster than searching the whole file for "eXIf" (1.6 ms at 5 MB), and only real chunk
    boundaries count. The chunk may come after the image data (PNG extensions 1.5).
    """
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"eXIf":
            return data[position + 8:position + 8 + min(length, MAX_BLOCK_BYTES)]
        if kind == b"IEND":
            return None
        position += 12 + length
    return None


class _BoundedReader(io.BytesIO):
    """The EXIF block as a file for exifread, answering nothing more once MAX_READ_BYTES have been read.

    An empty read is what exifread sees at the end of a file: it then stops the IFD it is in
    and keeps the tags it has, so a hostile block ends its reading early instead of failing.
    exifread reads a few bytes at a time (some 250 reads for a camera's block), hence the
    lean method: about 0.1 us per read over BytesIO's own.
    """

    __slots__ = ("_left",)

    def __init__(self, block: bytes):
        super().__init__(block)
        self._left = MAX_READ_BYTES

    def read(self, size: int | None = -1) -> bytes:
        if size is None or not 0 <= size <= self._left:
            size = self._left
        chunk = _bytesio_read(self, size)
        self._left -= len(chunk)
        return chunk


_bytesio_read = io.BytesIO.read


def clean_metadata(tags: dict) -> dict:
    """The EXIF part of the result's metadata: creation time, GPS, camera and orientation."""
    return {
        "created_at": created_at(tags),
        "gps": gps(tags),
        "camera_make": _text(tags, "Image Make"),
        "camera_model": _text(tags, "Image Model"),
        "orientation": orientation(tags),
    }


def created_at(tags: dict) -> str | None:
    """ISO 8601 creation time from the first parseable of DateTimeOriginal, DateTimeDigitized, DateTime."""
    for time_tag, offset_tag in _TIME_TAGS:
        value = _text(tags, time_tag)
        if not value:
            continue
        try:
            moment = datetime.strptime(value[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue          # "0000:00:00 00:00:00" and friends: try the next tag
        offset = _text(tags, offset_tag) or ""
        return moment.isoformat() + (offset if _is_utc_offset(offset) else "")
    return None


def _is_utc_offset(text: str) -> bool:
    return len(text) == 6 and text[0] in "+-" and text[3] == ":" and (text[1:3] + text[4:]).isdigit()


def gps(tags: dict) -> dict | None:
    """Latitude/longitude as degrees/minutes/seconds/direction and decimal degrees, altitude in metres."""
    latitude = _coordinate(tags, "GPS GPSLatitude", "GPS GPSLatitudeRef", "NS", 90)
    longitude = _coordinate(tags, "GPS GPSLongitude", "GPS GPSLongitudeRef", "EW", 180)
    if latitude is None or longitude is None:
        return None
    return {"latitude": latitude, "longitude": longitude,
            "latitude_decimal": _decimal(latitude), "longitude_decimal": _decimal(longitude),
            "altitude_m": _altitude(tags)}


def _coordinate(tags: dict, value_tag: str, ref_tag: str, directions: str, limit: int) -> dict | None:
    """Degrees, minutes, seconds and direction; None when absent, unreadable or off the globe."""
    try:
        degrees, minutes, seconds = (float(v) for v in tags[value_tag].values[:3])
    except (KeyError, ValueError, TypeError, ZeroDivisionError, AttributeError):
        return None
    direction = (_text(tags, ref_tag) or directions[0]).upper()[:1]
    if direction not in directions:
        return None
    coordinate = {"degrees": degrees, "minutes": minutes, "seconds": round(seconds, 6), "direction": direction}
    # "<= limit" is false for NaN too, which neither strict JSON nor a DynamoDB number accepts.
    if not (min(degrees, minutes, seconds) >= 0 and abs(_decimal(coordinate)) <= limit):
        log.info("GPS %s %s is not on the globe; GPS left out", value_tag, coordinate)
        return None
    return coordinate


def _decimal(coordinate: dict) -> float:
    value = coordinate["degrees"] + coordinate["minutes"] / 60 + coordinate["seconds"] / 3600
    return round(-value if coordinate["direction"] in "SW" else value, 7)


def _altitude(tags: dict) -> float | None:
    try:
        metres = float(tags["GPS GPSAltitude"].values[0])
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError, AttributeError):
        return None
    if not math.isfinite(metres):
        return None
    below_sea_level = _first(tags, "GPS GPSAltitudeRef") == 1
    return round(-metres if below_sea_level else metres, 2)


def orientation(tags: dict) -> int | None:
    """EXIF orientation 1-8, None when absent or out of range."""
    value = _first(tags, "Image Orientation")
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _first(tags: dict, name: str):
    try:
        return tags[name].values[0]
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def _text(tags: dict, name: str) -> str | None:
    """A string tag without padding spaces and NULs, at most MAX_TEXT_CHARS long; None when absent or empty."""
    tag = tags.get(name)
    values = getattr(tag, "values", None)
    if not isinstance(values, str):
        return None
    # Clip before cleaning too, so a string of a million characters costs no more than a short one.
    return values[:4 * MAX_TEXT_CHARS].replace("\x00", " ").strip()[:MAX_TEXT_CHARS] or None


def human_size(size: int) -> str:
    """Decimal (SI) units as file managers show them: "812 B", "48.2 kB", "2.3 MB"."""
    value, index = float(size), 0
    while round(value, 1) >= 1000 and index < len(_SIZE_UNITS) - 1:
        value, index = value / 1000, index + 1
    return f"{size} B" if index == 0 else f"{value:.1f} {_SIZE_UNITS[index]}"
