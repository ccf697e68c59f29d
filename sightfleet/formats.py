"""Image format sniffing from the first bytes, shared by the web tier's door check and the worker.

Standard library only, so the web tier can import it without torch or OpenCV.
"""
from __future__ import annotations

ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png"}

# How many leading bytes sniff_format looks at; callers may pass more.
HEAD_BYTES = 64

# (magic prefix, name): the formats people most often send by mistake are named in replies.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),             # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
)
# ISO base media "ftyp" brands: HEIF stills and sequences (HEVC, AV1 or other codecs).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def sniff_format(head: bytes) -> str | None:
    """Name the format of a file from its first bytes ("JPEG", "PNG", "TIFF", "TEXT", ...), None if unknown."""
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return _sniff_iso_media(head) or _sniff_text(head)


def _sniff_iso_media(head: bytes) -> str | None:
    """HEIF/AVIF by the major brand or, failing that, the compatible brands of the ftyp box."""
    if head[4:8] != b"ftyp":
        return None
    box_end = min(len(head), int.from_bytes(head[0:4], "big") or len(head))
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, box_end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


def _sniff_text(head: bytes) -> str | None:
    """Plain text (often an HTML error page or a note saved as .jpg): printable UTF-8 only."""
    try:
        # A multi-byte character cut at the end of the head is still text.
        text = head.decode("utf-8", errors="strict") if head else ""
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return None
        text = head[:exc.start].decode("utf-8")
    if text and all(ch.isprintable() or ch in "\r\n\t\f" for ch in text.lstrip("\ufeff")):
        return "TEXT"
    return None


def check_head(head: bytes) -> tuple[str | None, str | None]:
    """The format sniffed from these first bytes, and why it is refused (None when it is accepted)."""
    found = sniff_format(head)
    if not head:
        return found, "the file is empty; send a JPEG or PNG image"
    if found in ACCEPTED:
        return found, None
    if found == "TEXT":
        return found, "the file is plain text, not an image; send JPEG or PNG"
    if found is None:
        return found, "the file is not a recognised image format; send JPEG or PNG"
    return found, f"{found} images are not supported; send JPEG or PNG"


def unsupported_message(head: bytes) -> str | None:
    """Why these bytes are refused, naming what was found; None when the format is accepted."""
    return check_head(head)[1]
