"""The image outputs: the thumbnail and the annotated copy with boxes and names."""
from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from app_tier.pipeline.decode import Decoded, fit_within

JPEG, PNG = "image/jpeg", "image/png"
_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128))
_CAPTIONED = 3     # classifier-only labels written in the corner


# The thumbnail shrinks the 512-1024 px working image by a whole factor first (Image.reduce) and
# resamples only the rest: 2-3x faster than Lanczos all the way, a mean difference of about one
# level in 255, less than the JPEG encoding's own (benchmarks/pipeline.py, README.md).
_THUMBNAIL_REDUCING_GAP = 1.0


def thumbnail(decoded: Decoded, side: int, quality: int) -> tuple[bytes, str]:
    """Fit a side x side box; PNG when the image has transparency, JPEG otherwise."""
    if decoded.rgba is not None:
        return encode(_shrunk(decoded.rgba, side), PNG, quality), PNG
    return encode(_shrunk(decoded.rgb, side), JPEG, quality), JPEG


def _shrunk(image: Image.Image, side: int) -> Image.Image:
    return fit_within(image, side, Image.Resampling.LANCZOS, _THUMBNAIL_REDUCING_GAP)


def encode(image: Image.Image, content_type: str, quality: int) -> bytes:
    out = io.BytesIO()
    if content_type == PNG:
        image.save(out, "PNG")
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


_FACE, _TEXT = (255, 255, 255), (255, 225, 25)


def annotate(rgb: Image.Image, labels: list[dict], quality: int, faces: Sequence[dict] = (),
             text: Sequence[dict] = ()) -> bytes:
    """A JPEG copy of the upright working image with each instance and face boxed and captioned, and each line
    of text outlined."""
    canvas = rgb.copy()
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(max(canvas.size) / 320))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 45)))
    for detection in text:
        if detection["Type"] == "LINE":
            corners = [(p["X"] * canvas.width, p["Y"] * canvas.height) for p in detection["Geometry"]["Polygon"]]
            draw.polygon(corners, outline=_TEXT, width=max(1, line // 2))
    for face in faces:
        _draw_instance(draw, canvas.size, face, f"Face {face['Confidence']:.0f}%", _FACE, line, font)
    for number, label in enumerate(labels):
        colour = _PALETTE[number % len(_PALETTE)]
        for instance in label["Instances"]:
            _draw_instance(draw, canvas.size, instance, f"{label['Name']} {instance['Confidence']:.0f}%",
                           colour, line, font)
    corner = [f"{label['Name']} {label['Confidence']:.0f}%" for label in labels if not label["Instances"]]
    if corner:
        # Bottom left: boxes of whole-picture objects put their captions at the top left.
        text = "\n".join(corner[:_CAPTIONED])
        height = draw.multiline_textbbox((0, 0), text, font=font)[3]
        _caption(draw, (2 * line, canvas.height - height - 2 * line), text, (255, 255, 255), font)
    return encode(canvas, JPEG, quality)


def _draw_instance(draw, size, instance: dict, text: str, colour, line: int, font) -> None:
    box = instance["BoundingBox"]
    left, top = box["Left"] * size[0], box["Top"] * size[1]
    right, bottom = left + box["Width"] * size[0], top + box["Height"] * size[1]
    draw.rectangle((left, top, right, bottom), outline=colour, width=line)
    text_height = draw.textbbox((0, 0), text, font=font)[3]
    # Caption above the box, or inside it when the box touches the top edge.
    _caption(draw, (left, top - text_height - 2 * line if top > text_height + 2 * line else top + line),
             text, colour, font)


def _caption(draw, origin, text: str, colour, font) -> None:
    """Text on a filled background so it reads on any photo."""
    x, y = origin
    bbox = draw.multiline_textbbox((x, y), text, font=font)
    draw.rectangle((bbox[0] - 2, bbox[1] - 2, bbox[2] + 2, bbox[3] + 2), fill=colour)
    dark = sum(colour) > 382
    draw.multiline_text((x, y), text, font=font, fill=(0, 0, 0) if dark else (255, 255, 255))
