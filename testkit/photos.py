"""Real photos for tests and benchmarks: skimage's samples as JPEG, and the shared test photos."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"
SAMPLES = TESTDATA / "exif-samples"


def jpeg_bytes(name: str = "chelsea", scale: float = 1.0, quality: int = 90) -> bytes:
    """A real photo from skimage.data encoded as JPEG."""
    from PIL import Image
    from skimage import data
    image = Image.fromarray(getattr(data, name)())
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def photo(name: str) -> Image.Image:
    """A real photograph from skimage.data as a Pillow image."""
    from skimage import data
    pixels = getattr(data, name)()
    if name == "stereo_motorcycle":
        pixels = pixels[0]
    return Image.fromarray(pixels)
