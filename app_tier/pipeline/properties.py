"""Image properties without a model: quality (brightness, sharpness, contrast) and dominant colours, as
Rekognition's DetectLabels ImageProperties gives them.

Every figure is computed on a small copy (SIDE px long), so a photo costs the same whatever its size:
- Brightness: mean luma (BT.601) over 255, in percent.
- Contrast: the luma's standard deviation over 127.5 (half black, half white: 100), in percent.
- Sharpness: the variance v of the luma's Laplacian mapped to 100 * v / (v + SHARPNESS_HALF): a flat or
  blurred picture scores near 0, a crisp photo 70-95 (docs/recognition.md has the figures).
- DominantColors: each pixel takes its nearest CSS named colour in CIELAB (perceptual distance); the
  colours covering the most pixels are the dominant ones, with the mean RGB of their pixels, its hex code,
  the CSS name, one of twelve simplified colour names and the share of pixels.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
from PIL import Image, ImageColor

VERSION = "sightfleet-properties-1"
SIDE = 256                  # the quality copy's longest side
COLOR_SIDE = 64             # the colour copy's: 4,096 pixels at most, shares to a few hundredths of a percent
SHARPNESS_HALF = 200.0      # Laplacian variance that scores 50
MAX_COLORS = 10             # Rekognition's default MaxDominantColors
MIN_PIXEL_PERCENT = 1.0     # colours below this share are noise, not dominant

# Rekognition names one of twelve simplified colours per dominant colour; its documentation does not list them,
# so these are the eleven basic colour terms plus teal, each with the CSS colours that stand for it.
SIMPLIFIED_PROTOTYPES = {
    "red": ("red", "crimson", "firebrick", "darkred", "indianred"),
    "pink": ("pink", "hotpink", "lightpink", "palevioletred", "deeppink"),
    "orange": ("orange", "darkorange", "coral", "tomato", "sandybrown"),
    "yellow": ("yellow", "gold", "khaki", "lemonchiffon", "goldenrod"),
    "green": ("green", "lime", "forestgreen", "olivedrab", "darkgreen", "yellowgreen", "darkolivegreen"),
    "teal": ("teal", "darkcyan", "lightseagreen", "cadetblue"),
    "blue": ("blue", "navy", "royalblue", "steelblue", "skyblue", "deepskyblue", "lightblue", "cyan"),
    "purple": ("purple", "indigo", "violet", "orchid", "mediumpurple", "magenta", "plum"),
    "brown": ("brown", "saddlebrown", "sienna", "chocolate", "peru", "tan", "rosybrown", "maroon"),
    "white": ("white", "snow", "whitesmoke", "ivory", "linen"),
    "grey": ("gray", "darkgray", "silver", "lightgray", "dimgray", "slategray", "gainsboro"),
    "black": ("black",),
}


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L 0-100) of an (n, 3) array of 0-255 RGB."""
    pixels = (rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2Lab).reshape(-1, 3)


@functools.cache
def _css_palette() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The CSS named colours (one name per RGB value: "gray" over "grey", "aqua" over "cyan"), their RGB and Lab."""
    by_rgb: dict[tuple[int, ...], str] = {}
    for name in sorted(ImageColor.colormap):
        by_rgb.setdefault(ImageColor.getrgb(name)[:3], name)
    names = tuple(by_rgb.values())
    rgb = np.array(list(by_rgb), np.float32)
    return names, rgb, _lab(rgb)


@functools.cache
def _simplified_palette() -> tuple[tuple[str, ...], np.ndarray]:
    """Each prototype colour's simplified name and its Lab."""
    names = [simple for simple, css in SIMPLIFIED_PROTOTYPES.items() for _ in css]
    rgb = np.array([ImageColor.getrgb(c)[:3] for css in SIMPLIFIED_PROTOTYPES.values() for c in css], np.float32)
    return tuple(names), _lab(rgb)


def _nearest(lab: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette entry for each Lab row."""
    # |a - b|^2 = |a|^2 - 2ab + |b|^2, and |a|^2 is the same along a row: one matrix product
    return ((palette ** 2).sum(axis=1)[None, :] - 2 * lab @ palette.T).argmin(axis=1)


def simplified_color(rgb: tuple[int, int, int]) -> str:
    """One of the twelve simplified colour names for an RGB colour."""
    names, lab = _simplified_palette()
    return names[int(_nearest(_lab(np.array([rgb], np.float32)), lab)[0])]


def quality(luma: np.ndarray) -> dict:
    """Brightness, Sharpness and Contrast (0-100) of a luma image (0-255)."""
    variance = float(cv2.Laplacian(luma.astype(np.float32), cv2.CV_32F).var())
    return {"Brightness": round(float(luma.mean()) / 255 * 100, 2),
            "Sharpness": round(100 * variance / (variance + SHARPNESS_HALF), 2),
            "Contrast": round(min(100.0, float(luma.std()) / 127.5 * 100), 2)}


def dominant_colors(rgb: np.ndarray, limit: int = MAX_COLORS) -> list[dict]:
    """The CSS colours covering the most pixels of an (h, w, 3) RGB array, most first, at least MIN_PIXEL_PERCENT each."""
    names, _, palette = _css_palette()
    pixels = rgb.reshape(-1, 3)
    nearest = _nearest(_lab(pixels), palette)
    counts = np.bincount(nearest, minlength=len(names))
    found = []
    for index in np.argsort(-counts, kind="stable")[:limit]:
        percent = counts[index] / len(pixels) * 100
        if percent < MIN_PIXEL_PERCENT:
            break
        red, green, blue = (int(round(v)) for v in pixels[nearest == index].mean(axis=0))
        found.append({"Red": red, "Green": green, "Blue": blue, "HexCode": f"#{red:02X}{green:02X}{blue:02X}",
                      "CSSColor": names[index], "SimplifiedColor": simplified_color((red, green, blue)),
                      "PixelPercent": round(float(percent), 2)})
    return found


def working_copy(image: Image.Image, side: int) -> np.ndarray:
    """The picture as an RGB array at most `side` px long (box-averaged, so colours and blur survive)."""
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def image_properties(image: Image.Image) -> dict:
    """Rekognition's ImageProperties (Quality and DominantColors) of the whole picture."""
    small = working_copy(image, SIDE)
    luma = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return {"Quality": quality(luma), "DominantColors": dominant_colors(working_copy(Image.fromarray(small), COLOR_SIDE))}
