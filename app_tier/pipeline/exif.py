"""EXIF metadata read with exifread and cleaned into the result's metadata schema."""
from __future__ import annotations

import io
import logging
from datetime import datetime

import exifread

log = logging.getLogger(__name__)

# Creation time candidates, best first, each with the tag holding its UTC offset (EXIF 2.31).
_TIME_TAGS = (("EXIF DateTimeOriginal", "EXIF OffsetTimeOriginal"),
              ("EXIF DateTimeDigitized", "EXIF OffsetTimeDigitized"),
              ("Image DateTime", "EXIF OffsetTime"))
_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB")


def read_tags(data: bytes, fmt: str) -> dict:
    """All EXIF tags exifread finds; {} when there are none or the block is broken.

    PNGs without an eXIf chunk are skipped: exifread would only log a warning for each.

    details=False skips maker notes (the usual home of broken offsets and loops) and
    extract_thumbnail=False skips the embedded preview; strict=False (the default) makes
    exifread log and skip bad tags instead of raising.
    """
    if fmt == "PNG" and b"eXIf" not in data:
        return {}
    try:
        return exifread.process_file(io.BytesIO(data), details=False, extract_thumbnail=False)
    except Exception as exc:  # noqa: BLE001 - metadata is optional; a broken block must not fail the image
        log.warning("EXIF block unreadable (%s: %s); metadata left empty", type(exc).__name__, exc)
        return {}


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
    latitude = _coordinate(tags, "GPS GPSLatitude", "GPS GPSLatitudeRef", "NS")
    longitude = _coordinate(tags, "GPS GPSLongitude", "GPS GPSLongitudeRef", "EW")
    if latitude is None or longitude is None:
        return None
    return {"latitude": latitude, "longitude": longitude,
            "latitude_decimal": _decimal(latitude), "longitude_decimal": _decimal(longitude),
            "altitude_m": _altitude(tags)}


def _coordinate(tags: dict, value_tag: str, ref_tag: str, directions: str) -> dict | None:
    try:
        degrees, minutes, seconds = (float(v) for v in tags[value_tag].values[:3])
    except (KeyError, ValueError, TypeError, ZeroDivisionError, AttributeError):
        return None
    direction = (_text(tags, ref_tag) or directions[0]).upper()[:1]
    if direction not in directions:
        return None
    return {"degrees": degrees, "minutes": minutes, "seconds": round(seconds, 6), "direction": direction}


def _decimal(coordinate: dict) -> float:
    value = coordinate["degrees"] + coordinate["minutes"] / 60 + coordinate["seconds"] / 3600
    return round(-value if coordinate["direction"] in "SW" else value, 7)


def _altitude(tags: dict) -> float | None:
    try:
        metres = float(tags["GPS GPSAltitude"].values[0])
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError, AttributeError):
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
    """A string tag without padding spaces and NULs; None when absent or empty."""
    tag = tags.get(name)
    values = getattr(tag, "values", None)
    if not isinstance(values, str):
        return None
    return values.replace("\x00", " ").strip() or None


def human_size(size: int) -> str:
    """Decimal (SI) units as file managers show them: "812 B", "48.2 kB", "2.3 MB"."""
    value, index = float(size), 0
    while round(value, 1) >= 1000 and index < len(_SIZE_UNITS) - 1:
        value, index = value / 1000, index + 1
    return f"{size} B" if index == 0 else f"{value:.1f} {_SIZE_UNITS[index]}"
