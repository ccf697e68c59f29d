"""How result fields read on pages: times, metadata rows, timings, labels (used as Jinja filters)."""
from __future__ import annotations

import re
from datetime import datetime

from flask import Flask

from sightfleet.contracts import parse_time
from sightfleet.findterms import dicts

TOP_LABELS = 3
_HEX = re.compile(r"#[0-9a-fA-F]{6}")   # a swatch's fill: nothing else reaches the attribute
_ORIENTATIONS = {1: "upright", 2: "mirrored", 3: "upside down", 4: "upside down, mirrored",
                 5: "on its side, mirrored", 6: "turned 90° clockwise", 7: "on its side, mirrored",
                 8: "turned 90° counter-clockwise"}


def when(iso: str | None) -> str:
    """An ISO timestamp as people read it, in UTC."""
    if not iso:
        return ""
    try:
        return parse_time(iso).strftime("%d %b %Y, %H:%M:%S UTC")
    except ValueError:
        return iso


def taken(value: str | None) -> str:
    """When the camera says the photo was taken, with its UTC offset when it recorded one."""
    if not value:
        return ""
    for parse in (datetime.fromisoformat, lambda v: datetime.strptime(v, "%Y:%m:%d %H:%M:%S")):
        try:
            moment = parse(str(value))
        except ValueError:
            continue
        offset = moment.utcoffset()
        if offset is None:
            return moment.strftime("%d %b %Y, %H:%M:%S")
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        return moment.strftime("%d %b %Y, %H:%M:%S") + f" (UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"
    return str(value)


def orientation(value) -> str:
    """EXIF orientation 1-8 with what it means; other values as given."""
    name = _ORIENTATIONS.get(value) if isinstance(value, int) else None
    return f"{value} ({name})" if name else str(value or "")


def camera(metadata: dict) -> str:
    """Make and model, without the make twice ("Canon Canon EOS 40D")."""
    make, model = (str(metadata.get(k) or "").strip() for k in ("camera_make", "camera_model"))
    if make and model.lower().startswith(make.lower()):
        return model
    return " ".join(filter(None, (make, model)))


def _dms(value) -> str:
    """Degrees/minutes/seconds as the worker wrote them (text or a dict of parts)."""
    if isinstance(value, dict):
        parts = [value.get(k) for k in ("degrees", "minutes", "seconds")]
        if all(isinstance(p, (int, float)) for p in parts):
            return f"{parts[0]:g}° {parts[1]:g}′ {parts[2]:.2f}″ {value.get('direction') or value.get('ref') or ''}".strip()
        return ""
    return str(value) if value else ""


def gps(value: dict | None) -> str:
    """Decimal coordinates with hemisphere letters, and the camera's D/M/S beside them; never a link."""
    if not isinstance(value, dict):
        return ""
    lat, lon = value.get("latitude_decimal"), value.get("longitude_decimal")
    if not all(isinstance(v, (int, float)) for v in (lat, lon)):
        return ""
    text = f"{abs(lat):.6f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.6f}° {'E' if lon >= 0 else 'W'}"
    dms = [_dms(value.get(k)) for k in ("latitude", "longitude")]
    if all(dms):
        text += f" ({dms[0]}, {dms[1]})"
    altitude = value.get("altitude_m")
    return text + (f", {altitude:.0f} m above sea level" if isinstance(altitude, (int, float)) else "")


def metadata_rows(metadata: dict | None) -> list[tuple[str, str]]:
    """The metadata table's rows, leaving out what the photo did not say."""
    meta = metadata or {}
    width, height = meta.get("width"), meta.get("height")
    size = meta.get("file_size_human") or (f"{meta['file_size']:,} bytes" if meta.get("file_size") else "")
    rows = [
        ("Taken", taken(meta.get("created_at"))),
        ("Camera", camera(meta)),
        ("GPS", gps(meta.get("gps"))),
        ("Dimensions", f"{width} × {height} px" if width and height else ""),
        ("File size", size),
        ("Format", meta.get("format")),
        ("Orientation", orientation(meta.get("orientation"))),
    ]
    return [(name, str(value)) for name, value in rows if value not in (None, "")]


def timing_rows(timings: dict | None) -> list[tuple[str, float, float]]:
    """(stage, ms, share of the slowest stage) per stage, in pipeline order; the total is left out."""
    stages = [(str(k), float(v)) for k, v in (timings or {}).items()
              if k != "total" and isinstance(v, (int, float))]
    slowest = max((ms for _, ms in stages), default=0.0) or 1.0
    return [(name, ms, ms / slowest) for name, ms in stages]


def top_labels(labels: list | None, count: int = TOP_LABELS) -> list[dict]:
    """The most confident labels first."""
    return sorted(labels or [], key=lambda label: -float(label.get("Confidence", 0)))[:count]


def text_lines(detections: list | None) -> list[tuple[str, float]]:
    """(text, confidence) of each LINE the worker read, in reading order (its Id)."""
    lines = [d for d in dicts(detections) if d.get("Type") == "LINE"]
    return [(str(d.get("DetectedText", "")), float(d.get("Confidence") or 0))
            for d in sorted(lines, key=lambda d: d.get("Id") or 0)]


def swatches(properties: dict | None) -> list[dict]:
    """The dominant colours as swatches: a checked hex code (drawn as an SVG fill), names and share."""
    colors = dicts(properties.get("DominantColors") if isinstance(properties, dict) else None)
    return [{"hex": str(c.get("HexCode")), "name": str(c.get("SimplifiedColor") or ""),
             "css": str(c.get("CSSColor") or ""), "percent": float(c.get("PixelPercent") or 0)}
            for c in colors if _HEX.fullmatch(str(c.get("HexCode") or ""))]


def quality_rows(properties: dict | None) -> list[tuple[str, float]]:
    """(figure, value 0-100) of the photo's Quality: brightness, sharpness, contrast."""
    quality = properties.get("Quality") if isinstance(properties, dict) else None
    return [(name, float(quality[name])) for name in ("Brightness", "Sharpness", "Contrast")
            if isinstance(quality, dict) and isinstance(quality.get(name), (int, float))]


def install(app: Flask) -> None:
    """Register the filters templates use; taken, camera, gps and orientation serve metadata_rows."""
    for function in (when, metadata_rows, timing_rows, top_labels, text_lines, swatches, quality_rows):
        app.add_template_filter(function)
