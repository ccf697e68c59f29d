"""Builders of hostile images for the pipeline corpus: raw PNG chunks, hand-laid EXIF blocks, patched JPEG headers.

Everything is made in memory from skimage photos, Pillow and struct, so no large file is committed.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from tests.pipeline_fixtures import encoded, png_chunk

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# TIFF field types (EXIF 2.32, section 4.6.2).
ASCII, SHORT, LONG, RATIONAL, DOUBLE = 2, 3, 4, 5, 12
_UNIT = {ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, DOUBLE: 8}

# Tags used below.
MAKE, MODEL, ORIENTATION, DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
EXIF_POINTER, GPS_POINTER = 0x8769, 0x8825
DATETIME_ORIGINAL = 0x9003
GPS_LATITUDE_REF, GPS_LATITUDE, GPS_LONGITUDE_REF, GPS_LONGITUDE = 1, 2, 3, 4

# Adam7 passes as (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def entry(tag: int, kind: int, value, count: int | None = None) -> tuple:
    """One IFD entry: value is bytes (little-endian field data), or "ifd0"/"exif"/"gps"/"extra" for a pointer."""
    if isinstance(value, str):
        return tag, kind, 1 if count is None else count, value
    return tag, kind, len(value) // _UNIT[kind] if count is None else count, value


def ascii_entry(tag: int, text: str | bytes, count: int | None = None) -> tuple:
    raw = (text.encode() if isinstance(text, str) else text) + b"\x00"
    return entry(tag, ASCII, raw, count)


def short_entry(tag: int, *values: int, count: int | None = None) -> tuple:
    return entry(tag, SHORT, struct.pack(f"<{len(values)}H", *values), count)


def rational_entry(tag: int, *pairs: tuple[int, int], count: int | None = None) -> tuple:
    return entry(tag, RATIONAL, b"".join(struct.pack("<II", n, d) for n, d in pairs), count)


def gps_entries(latitude: Sequence[tuple[int, int]], longitude: Sequence[tuple[int, int]]) -> list[tuple]:
    return [ascii_entry(GPS_LATITUDE_REF, "N"), rational_entry(GPS_LATITUDE, *latitude),
            ascii_entry(GPS_LONGITUDE_REF, "E"), rational_entry(GPS_LONGITUDE, *longitude)]


def tiff_block(ifd0: list[tuple], exif: list[tuple] | None = None, gps: list[tuple] | None = None,
               next_ifd: str | int = 0, extra: bytes = b"") -> bytes:
    """A little-endian TIFF/EXIF block: IFD0, optional EXIF and GPS IFDs, then `extra`, then out-of-line data.

    Pointers to the EXIF and GPS IFDs are added to IFD0 when those are given; `next_ifd` may name
    an IFD ("ifd0" makes IFD0 point to itself) or be a raw offset.
    """
    ifd0 = list(ifd0)
    tags = {e[0] for e in ifd0}
    if exif is not None and EXIF_POINTER not in tags:
        ifd0.append(entry(EXIF_POINTER, LONG, "exif"))
    if gps is not None and GPS_POINTER not in tags:
        ifd0.append(entry(GPS_POINTER, LONG, "gps"))
    ifds = [("ifd0", ifd0)] + [(name, e) for name, e in (("exif", exif), ("gps", gps)) if e is not None]
    offsets, position = {}, 8
    for name, entries in ifds:
        offsets[name] = position
        position += 2 + 12 * len(entries) + 4
    offsets["extra"] = position
    data = bytearray(extra)
    data_start = position + len(extra)

    def field(kind, count, value) -> bytes:
        if isinstance(value, str):
            return struct.pack("<I", offsets[value])
        if len(value) <= 4:
            return value.ljust(4, b"\x00")
        data.extend(value + b"\x00" * (len(value) % 2))      # word-aligned, as the spec asks
        return struct.pack("<I", data_start + len(data) - len(value) - len(value) % 2)

    body = bytearray()
    for name, entries in ifds:
        body += struct.pack("<H", len(entries))
        for tag, kind, count, value in sorted(entries, key=lambda e: e[0]):
            body += struct.pack("<HHI", tag, kind, count) + field(kind, count, value)
        following = next_ifd if name == "ifd0" else 0
        body += struct.pack("<I", offsets[following] if isinstance(following, str) else following)
    return b"II*\x00" + struct.pack("<I", 8) + bytes(body) + bytes(data)


def chained_ifds(count: int) -> bytes:
    """`count` one-entry IFDs, each pointing to the next: a long chain, no loop."""
    size = 2 + 12 + 4
    body = bytearray()
    for index in range(count):
        text = f"Chain {index}".encode() + b"\x00"
        offset = 8 + count * size + 16 * index
        following = 8 + (index + 1) * size if index + 1 < count else 0
        body += struct.pack("<HHHII", 1, MAKE, ASCII, len(text), offset) + struct.pack("<I", following)
    strings = b"".join((f"Chain {i}".encode() + b"\x00").ljust(16, b"\x00") for i in range(count))
    return b"II*\x00" + struct.pack("<I", 8) + bytes(body) + strings


def jpeg_with_exif(image: Image.Image, block: bytes, **options) -> bytes:
    return encoded(image.convert("RGB"), "JPEG", exif=b"Exif\x00\x00" + block, quality=90, **options)


def png_with_exif(image: Image.Image, block: bytes) -> bytes:
    """A PNG with the block in an eXIf chunk placed before the image data."""
    return insert_png_chunks(encoded(image, "PNG"), [png_chunk(b"eXIf", block)])


def insert_png_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    """The PNG with extra chunks right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png[:33] + b"".join(chunks) + png[33:]


def raw_png(pixels: np.ndarray, color_type: int, bit_depth: int, interlaced: bool = False,
            palette: bytes | None = None, chunks: Sequence[bytes] = ()) -> bytes:
    """A PNG written by hand, for what Pillow cannot save: 16-bit colour, Adam7 interlacing."""
    height, width = pixels.shape[:2]
    samples = pixels.astype(">u2" if bit_depth == 16 else np.uint8)
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    scanlines = bytearray()
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.size:
            for row in sub:
                scanlines += b"\x00" + row.tobytes()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlaced))
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + b"".join(chunks)
            + (png_chunk(b"PLTE", palette) if palette else b"")
            + png_chunk(b"IDAT", zlib.compress(bytes(scanlines))) + png_chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small baseline JPEG whose frame header (SOF0) claims another size: a bomb by its header."""
    data = bytearray(encoded(Image.new("RGB", (16, 16), (90, 120, 200)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def blank_png_of(width: int, height: int) -> bytes:
    """A valid all-black greyscale PNG of any size: tiny on disk, width x height bytes once decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def replace_png_chunk(png: bytes, kind: bytes, body: bytes) -> bytes:
    """The PNG with its first `kind` chunk given a new body (and a correct CRC)."""
    start = png.index(kind) - 4
    length = struct.unpack(">I", png[start:start + 4])[0]
    return png[:start] + png_chunk(kind, body) + png[start + 12 + length:]


def png_claiming(width: int, height: int) -> bytes:
    """A greyscale PNG header claiming width x height, followed by a few rows' worth of compressed zeros."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
            + png_chunk(b"IEND", b""))
