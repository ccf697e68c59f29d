"""Image format sniffing from the first bytes, shared by the web tier's door check and the worker."""
from __future__ import annotations

ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png"}

# (magic prefix, offset, name): the formats people most often send by mistake are named in replies.
_SIGNATURES = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"BM", 0, "BMP"),
    (b"%PDF", 0, "PDF"),
    (b"ftypheic", 4, "HEIF"),
    (b"ftypheix", 4, "HEIF"),
    (b"ftypmif1", 4, "HEIF"),
    (b"ftypmsf1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
)


def sniff_format(head: bytes) -> str | None:
    """Name the image format from a file's first bytes (at least 16), None when unknown."""
    for magic, offset, name in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def unsupported_reason(head: bytes) -> str | None:
    """A human explanation when the bytes are not an accepted image, else None."""
    if not head:
        return "the file is empty"
    found = sniff_format(head)
    if found in ACCEPTED:
        return None
    what = f"{found} images are" if found else "this file is not an image format that is"
    return f"{what} not supported; send JPEG or PNG"
