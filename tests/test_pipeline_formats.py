"""Format sniffing from the first bytes: real files, Pillow-made files, and what the name says not mattering."""
from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from sightfleet.formats import HEAD_BYTES, sniff_format, unsupported_message
from tests.pipeline_fixtures import SAMPLES, TESTDATA, encoded, photo
from tests.support import REPO

pytestmark = pytest.mark.slow  # models loaded

REAL_FILES = [
    ("jpg/Canon_40D.jpg", "JPEG"),
    ("jpg/corrupted.jpg", "JPEG"),
    ("tiff/Arbitro.tiff", "TIFF"),
    ("heic/samplefilehub.heif", "HEIF"),
]


@pytest.mark.parametrize("relative, expected", REAL_FILES)
def test_real_files_are_named_from_their_bytes(relative, expected):
    assert sniff_format((SAMPLES / relative).read_bytes()[:HEAD_BYTES]) == expected


@pytest.mark.parametrize("fmt, expected", [
    ("JPEG", "JPEG"), ("PNG", "PNG"), ("GIF", "GIF"), ("WEBP", "WEBP"), ("TIFF", "TIFF"), ("BMP", "BMP"),
])
def test_pillow_encodings_are_told_apart(fmt, expected):
    image = photo("chelsea").resize((64, 43))
    assert sniff_format(encoded(image, fmt)[:HEAD_BYTES]) == expected


def test_text_is_text_whatever_its_name():
    head = (TESTDATA / "README.md").read_bytes()[:HEAD_BYTES]
    assert sniff_format(head) == "TEXT"
    assert unsupported_message(head) == "the file is plain text, not an image; send JPEG or PNG"


def test_text_cut_inside_a_multibyte_character_is_still_text():
    assert sniff_format("photo of a café".encode()[:-1]) == "TEXT"


def test_binary_noise_is_unknown():
    assert sniff_format(bytes(range(0, 256, 7))) is None
    assert unsupported_message(bytes(range(0, 256, 7))) == (
        "the file is not a recognised image format; send JPEG or PNG")


def test_heif_is_found_by_compatible_brand_too():
    head = b"\x00\x00\x00\x1cftypXXXX\x00\x00\x00\x00mif1heic"
    assert sniff_format(head) == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1") == "AVIF"


def test_messages_name_what_was_found():
    assert unsupported_message(b"") == "the file is empty; send a JPEG or PNG image"
    tiff = (SAMPLES / "tiff/Arbitro.tiff").read_bytes()[:HEAD_BYTES]
    assert unsupported_message(tiff) == "TIFF images are not supported; send JPEG or PNG"
    assert unsupported_message(encoded(Image.new("RGB", (4, 4)), "PNG")) is None


def test_module_stays_light_for_the_web_tier():
    code = ("import sys, sightfleet.formats; "
            "heavy = {'torch', 'cv2', 'PIL', 'numpy'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
