"""The optional stages (text, faces, image properties, moderation): their answers on real and made photos, in
Rekognition's shapes (checked against botocore's service model), run only when asked, and a model that cannot
load failing only the jobs that need it."""
from __future__ import annotations

import dataclasses
import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from app_tier.batches import JobInProgress, _submit
from app_tier.pipeline import FAILED, SUCCEEDED, ImageInput, Pipeline, PipelineSettings, faces, stages
from app_tier.pipeline.errors import FEATURE_UNAVAILABLE
from app_tier.pipeline.moderation import moderation_labels, review
from app_tier.pipeline import runtime
from app_tier.pipeline.properties import image_properties, simplified_color
from app_tier.pipeline.text import MAX_WORDS, text_detections
from sightfleet.config import REPO_ROOT
from sightfleet.contracts import Job
from sightfleet.features import FACES, FEATURES, LABELS, MODERATION, PROPERTIES, TEXT
from testkit.parity import SHARED_PHOTOS, shared_pipeline
from testkit.photos import SAMPLES, photo
from tests.aws_shapes import assert_output_shape

ALL = FEATURES
MATPLOTLIB_SAMPLES = Path(__import__("matplotlib").get_data_path()) / "sample_data"


def encoded(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


def grace_hopper() -> Image.Image:
    return Image.open(MATPLOTLIB_SAMPLES / "grace_hopper.jpg")


def with_sign(base: Image.Image, words: str) -> Image.Image:
    """A photo with a white sign of black words on it (a plate, a shop sign)."""
    picture = base.convert("RGB").copy()
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(24, picture.width // 16))
    left, top, right, bottom = draw.textbbox((40, 30), words, font=font)
    draw.rectangle((left - 16, top - 12, right + 16, bottom + 12), fill="white")
    draw.text((40, 30), words, fill="black", font=font)
    return picture


@pytest.fixture(scope="module")
def pipeline():
    return shared_pipeline()


def run(pipeline, image: Image.Image, features=ALL, name: str = "photo"):
    outcome, = pipeline.process([ImageInput(id=name, data=encoded(image), filename=name, features=features)])
    assert outcome.status == SUCCEEDED, outcome.error
    return outcome


# --- image properties: made images of known colours, brightness and blur ---------------------------------

def solid(rgb, size=(120, 80)) -> Image.Image:
    return Image.new("RGB", size, rgb)


@pytest.mark.parametrize("rgb,css,simple", [
    ((255, 0, 0), "red", "red"), ((0, 0, 255), "blue", "blue"), ((0, 128, 0), "green", "green"),
    ((255, 255, 255), "white", "white"), ((0, 0, 0), "black", "black"), ((128, 128, 128), "gray", "grey"),
    ((255, 165, 0), "orange", "orange"), ((255, 192, 203), "pink", "pink"), ((128, 0, 128), "purple", "purple"),
    ((139, 69, 19), "saddlebrown", "brown"), ((255, 255, 0), "yellow", "yellow"), ((0, 128, 128), "teal", "teal"),
])
def test_a_solid_colour_is_its_own_dominant_colour(rgb, css, simple):
    colour, = image_properties(solid(rgb))["DominantColors"]
    assert (colour["Red"], colour["Green"], colour["Blue"]) == rgb
    assert colour["HexCode"] == "#%02X%02X%02X" % rgb
    assert (colour["CSSColor"], colour["SimplifiedColor"], colour["PixelPercent"]) == (css, simple, 100.0)


def test_colour_shares_follow_the_areas():
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, :150] = (0, 0, 255)          # three quarters blue
    pixels[:, 150:] = (255, 255, 0)        # a quarter yellow
    colours = image_properties(Image.fromarray(pixels))["DominantColors"]
    assert [(c["SimplifiedColor"], c["PixelPercent"]) for c in colours] == [("blue", 75.0), ("yellow", 25.0)]


def test_near_colours_get_their_simplified_names():
    assert simplified_color((250, 10, 20)) == "red"
    assert simplified_color((30, 30, 200)) == "blue"
    assert simplified_color((200, 200, 200)) == "grey"
    assert simplified_color((120, 70, 30)) == "brown"


def test_brightness_and_contrast_of_made_images():
    black, white = image_properties(solid((0, 0, 0)))["Quality"], image_properties(solid((255, 255, 255)))["Quality"]
    assert black["Brightness"] == 0 and white["Brightness"] == 100
    assert black["Contrast"] == white["Contrast"] == 0 and black["Sharpness"] == 0
    halves = np.zeros((100, 200, 3), np.uint8)
    halves[:, 100:] = 255
    quality = image_properties(Image.fromarray(halves))["Quality"]
    assert quality["Contrast"] == pytest.approx(100, abs=1) and quality["Brightness"] == pytest.approx(50, abs=1)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
def test_blur_lowers_sharpness_and_keeps_brightness(name):
    sharp = image_properties(photo(name))["Quality"]
    blurred = image_properties(photo(name).filter(ImageFilter.GaussianBlur(4)))["Quality"]
    assert sharp["Sharpness"] > 60 > 10 > blurred["Sharpness"]
    assert blurred["Brightness"] == pytest.approx(sharp["Brightness"], abs=1)
    assert 0 <= sharp["Contrast"] <= 100 and blurred["Contrast"] <= sharp["Contrast"]


def test_a_photo_has_several_dominant_colours_adding_up_to_at_most_all_pixels():
    colours = image_properties(photo("astronaut"))["DominantColors"]
    assert 3 <= len(colours) <= 10
    assert sum(c["PixelPercent"] for c in colours) <= 100.01
    assert [c["PixelPercent"] for c in colours] == sorted((c["PixelPercent"] for c in colours), reverse=True)


# --- moderation and text: the pure parts --------------------------------------------------------------------

@pytest.mark.parametrize("nsfw,threshold,mode,labels,verdict", [
    (0.02, 80, "flag", 0, {"flagged": False, "held": False}),
    (0.6, 80, "flag", 1, {"flagged": False, "held": False}),
    (0.8, 80, "flag", 1, {"flagged": True, "held": False}),
    (0.95, 80, "hold", 1, {"flagged": True, "held": True}),
    (0.5, 80, "hold", 1, {"flagged": False, "held": False}),
    (0.95, 80, "off", 1, {"flagged": True, "held": False}),
    (0.3, 20, "hold", 0, {"flagged": True, "held": True}),
])
def test_moderation_labels_and_review(nsfw, threshold, mode, labels, verdict):
    found = moderation_labels(nsfw)
    assert len(found) == labels and review(nsfw, threshold, mode) == verdict
    for label in found:
        assert label == {"Name": "Explicit", "ParentName": "", "Confidence": round(nsfw * 100, 3), "TaxonomyLevel": 1}
    assert_output_shape("rekognition", "DetectModerationLabels", {"ModerationLabels": found})


def test_text_detections_cap_the_words_and_point_to_their_lines():
    box = [[10, 10], [90, 10], [90, 30], [10, 30]]
    lines = [(f"line {n}", 0.9, box) for n in range(80)]
    words = [[(f"w{n}a", 0.95, box), (f"w{n}b", 0.85, box)] for n in range(80)]
    found = text_detections(lines, words, 100, 40)
    kept_lines = [d for d in found if d["Type"] == "LINE"]
    kept_words = [d for d in found if d["Type"] == "WORD"]
    assert len(kept_words) == MAX_WORDS and len(kept_lines) == MAX_WORDS // 2
    assert [d["Id"] for d in found] == list(range(len(found)))
    assert {w["ParentId"] for w in kept_words} == {line["Id"] for line in kept_lines}
    assert kept_lines[0]["Geometry"]["BoundingBox"] == {"Width": 0.8, "Height": 0.5, "Left": 0.1, "Top": 0.25}
    assert_output_shape("rekognition", "DetectText", {"TextDetections": found})


def test_face_anchors_and_weighted_suppression():
    assert faces.anchors().shape == (48 * 48, 2)
    assert faces.anchors()[0].tolist() == pytest.approx([0.5 / 48, 0.5 / 48])
    assert faces.anchors()[48].tolist() == pytest.approx([0.5 / 48, 1.5 / 48])      # row by row
    face = np.array([[0.2, 0.2], [0.4, 0.4], *[[0.3, 0.3]] * 6], np.float32)
    shifted, far = face + 0.01, face + 0.5
    merged, = [f for f, _ in faces.weighted_nms(np.stack([face, shifted]), np.array([0.9, 0.9]))]
    assert merged[0].tolist() == pytest.approx([0.205, 0.205])
    kept = faces.weighted_nms(np.stack([face, far, shifted]), np.array([0.9, 0.7, 0.4]))
    assert [score for _, score in kept] == [0.9, 0.7]          # the weak overlapping box is below MIN_SCORE


# --- the models on real photos -----------------------------------------------------------------------------

def test_faces_in_photos_of_people(pipeline):
    for image in (photo("astronaut"), grace_hopper()):
        detail, = run(pipeline, image, (FACES,)).face_details
        assert detail["Confidence"] > 70
        marks = {m["Type"]: (m["X"], m["Y"]) for m in detail["Landmarks"]}
        assert set(marks) == {"eyeLeft", "eyeRight", "nose"}
        box = detail["BoundingBox"]
        assert box["Left"] < marks["nose"][0] < box["Left"] + box["Width"]
        assert marks["eyeRight"][0] < marks["eyeLeft"][0]       # the person's right eye is on the image's left
        assert abs(detail["Pose"]["Roll"]) < 10
        assert_output_shape("rekognition", "DetectFaces", {"FaceDetails": [detail]})


def test_two_people_side_by_side_are_two_faces(pipeline):
    pair = np.concatenate([np.asarray(photo("astronaut")), np.asarray(grace_hopper().resize((512, 512)))], axis=1)
    details = run(pipeline, Image.fromarray(pair), (FACES,)).face_details
    assert len(details) == 2 and {d["BoundingBox"]["Left"] < 0.5 for d in details} == {True, False}


def test_a_tilted_head_gives_its_roll(pipeline):
    detail, = run(pipeline, photo("astronaut").rotate(20), (FACES,)).face_details
    assert detail["Pose"]["Roll"] == pytest.approx(-20, abs=6)


@pytest.mark.parametrize("name", ["chelsea", "coffee", "stereo_motorcycle", "rocket"])
def test_no_faces_without_people(pipeline, name):
    assert run(pipeline, photo(name), (FACES,)).face_details == []


@pytest.mark.slow
def test_text_of_a_sign_is_read_line_and_words(pipeline):
    found = run(pipeline, with_sign(photo("coffee"), "TOYOTA CARSON CITY"), (TEXT,)).text_detections
    lines = [d for d in found if d["Type"] == "LINE"]
    words = [d["DetectedText"] for d in found if d["Type"] == "WORD"]
    assert any("CARSON" in line["DetectedText"] for line in lines)
    assert {"TOYOTA", "CARSON", "CITY"} <= set(words)
    assert_output_shape("rekognition", "DetectText", {"TextDetections": found})


@pytest.mark.slow
def test_text_of_a_printed_page(pipeline):
    from skimage import data
    found = run(pipeline, Image.fromarray(data.page()), (TEXT,)).text_detections
    assert "Region-based segmentation" in [d["DetectedText"] for d in found if d["Type"] == "LINE"]


def test_a_text_only_job_runs_no_label_models(pipeline, monkeypatch):
    def refuse(*_):
        raise AssertionError("a label model ran")
    monkeypatch.setattr(pipeline.detector, "run", refuse)
    monkeypatch.setattr(pipeline.classifier, "run", refuse)
    outcome = run(pipeline, photo("chelsea"), (TEXT,))
    assert outcome.labels == [] and outcome.top_label is None and outcome.label_model_version is None
    assert {"detect", "classify", "merge", "faces", "properties", "moderation"}.isdisjoint(outcome.timings)
    assert "text" in outcome.timings and set(outcome.model_versions) == {TEXT}
    assert outcome.face_details == [] and outcome.image_properties is None and outcome.review is None


def test_every_feature_fills_its_field_in_rekognition_shapes(pipeline):
    outcome = run(pipeline, with_sign(photo("astronaut"), "SPACE"), ALL)
    assert outcome.labels and len(outcome.face_details) == 1 and outcome.review == {"flagged": False, "held": False}
    assert set(outcome.model_versions) == set(ALL)
    assert {"detect", "classify", "text", "faces", "properties", "moderation"} <= set(outcome.timings)
    assert_output_shape("rekognition", "DetectLabels", {"ImageProperties": outcome.image_properties})
    assert_output_shape("rekognition", "DetectFaces", {"FaceDetails": outcome.face_details})
    assert_output_shape("rekognition", "DetectText", {"TextDetections": outcome.text_detections})
    assert_output_shape("rekognition", "DetectModerationLabels", {"ModerationLabels": outcome.moderation_labels})
    assert "SPACE" in [d["DetectedText"] for d in outcome.text_detections]


def ordinary_photos() -> list[tuple[str, Image.Image]]:
    """Every real photo at hand: skimage's, the shared camera photos, matplotlib's portrait."""
    named = [(name, photo(name)) for name in ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")]
    named += [(relative, Image.open(SAMPLES / relative)) for relative in SHARED_PHOTOS]
    return named + [("grace_hopper", grace_hopper())]


@pytest.mark.slow
def test_moderation_flags_none_of_the_ordinary_photos(pipeline):
    inputs = [ImageInput(id=name, data=encoded(image), features=(MODERATION,)) for name, image in ordinary_photos()]
    outcomes = pipeline.process(inputs)
    assert all(o.status == SUCCEEDED for o in outcomes)
    flagged = [o.id for o in outcomes if o.review["flagged"]]
    assert flagged == [] and len(outcomes) >= 30


def test_the_hold_mode_holds_what_it_flags(pipeline):
    strict = pipeline.with_settings(dataclasses.replace(pipeline.settings, moderation="hold", moderation_threshold=0))
    outcome = run(strict, photo("coffee"), (MODERATION,))
    assert outcome.review == {"flagged": True, "held": True}


def test_an_input_without_features_gets_the_default(pipeline):
    outcome, = pipeline.process([ImageInput(id="d", data=encoded(photo("coffee")))])
    assert set(outcome.model_versions) == set(pipeline.settings.default_features) == {
        LABELS, FACES, PROPERTIES, MODERATION}


def test_the_worker_hands_the_jobs_features_to_the_pipeline():
    class Recording:
        def submit(self, inputs):
            self.inputs = inputs
            return "pending"

    pipeline = Recording()
    common = {"album": "", "content_type": "image/jpeg", "submitted_at": "2026-12-07T00:00:00Z", "size": 1}
    asked = Job(id="a" * 32, filename="x.jpg", features=(TEXT, FACES), **common)
    plain = Job(id="b" * 32, filename="y.jpg", **common)
    _submit(pipeline, [JobInProgress(message=None, job=asked, data=b"1"), JobInProgress(message=None, job=plain, data=b"2")])
    assert [i.features for i in pipeline.inputs] == [(TEXT, FACES), None]


# --- a model that cannot load --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def without_faces():
    """A pipeline whose face model fails to load (the failure injected in the loader table)."""
    with pytest.MonkeyPatch.context() as patch:
        def broken(settings):
            raise RuntimeError("simulated: the face model file is damaged")
        patch.setitem(stages.LOADERS, FACES, broken)
        loaded = Pipeline(PipelineSettings())
    return loaded


def test_a_feature_whose_model_did_not_load_fails_only_its_jobs(without_faces):
    data = encoded(photo("astronaut"))
    asked, other = without_faces.process([ImageInput(id="f", data=data, features=(LABELS, FACES)),
                                          ImageInput(id="t", data=data, features=(LABELS, PROPERTIES))])
    assert asked.status == FAILED and asked.error["code"] == FEATURE_UNAVAILABLE
    assert "faces" in asked.error["message"] and "damaged" in asked.error["message"]
    assert other.status == SUCCEEDED and other.labels and other.image_properties
    assert without_faces.stages.unavailable.keys() == {FACES}


def test_the_unavailable_model_is_logged_once_at_load(caplog):
    with pytest.MonkeyPatch.context() as patch:
        def broken(settings):
            raise OSError("simulated: no such file")
        patch.setitem(stages.LOADERS, MODERATION, broken)
        with caplog.at_level(logging.WARNING, logger="app_tier.pipeline.stages"):
            loaded = stages.OptionalStages.load(PipelineSettings())
    warnings = [r for r in caplog.records if "moderation" in r.getMessage()]
    assert len(warnings) == 1 and FEATURE_UNAVAILABLE in warnings[0].getMessage()
    assert set(loaded.loaded) == {TEXT, FACES}
    with pytest.raises(stages.StageError) as caught:
        loaded.check((LABELS, MODERATION))
    assert caught.value.code == FEATURE_UNAVAILABLE
    loaded.check((LABELS, TEXT, FACES))


def test_the_optional_models_are_cached_by_their_own_packages(tmp_path):
    for name, packages in runtime.OPTIONAL_PACKAGES.items():
        xml = runtime.cached_ir(name, tmp_path)
        assert xml == tmp_path / runtime.cache_key(packages=packages) / name / "model.xml"
        assert packages[0] in xml.parent.parent.name and xml.with_suffix(".bin").stat().st_size > 100_000


def test_a_damaged_cached_model_makes_its_feature_unavailable(tmp_path):
    entry = tmp_path / runtime.cache_key(packages=runtime.OPTIONAL_PACKAGES[runtime.FACE_DETECTOR])
    (entry / runtime.FACE_DETECTOR).mkdir(parents=True)
    (entry / runtime.FACE_DETECTOR / "model.xml").write_text("<net>not an IR</net>")
    loaded = stages.OptionalStages.load(PipelineSettings(model_cache_dir=str(tmp_path)))
    assert set(loaded.unavailable) == {FACES} and set(loaded.loaded) == {TEXT, MODERATION}


FREED_THEN_SIGNALLED = """
import gc, time
from app_tier.pipeline.errors import StageError
from app_tier.pipeline.pipeline import Pipeline
from app_tier.pipeline.records import PipelineSettings
from app_tier.pipeline.timelimit import Budget, charged
pipeline = Pipeline(PipelineSettings())
del pipeline
gc.collect()
try:
    with charged(Budget(0.2), "spin"):
        time.sleep(2)
except StageError as exc:
    print(exc.code)
"""


def test_a_freed_pipeline_survives_a_signal():
    """A pipeline let go of (a test's, a with_settings copy's) must leave its process able to take SIGALRM:
    an OpenVINO Core freed after its models ran on the models thread made the next signal a segfault."""
    done = subprocess.run([sys.executable, "-c", FREED_THEN_SIGNALLED], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "TIMEOUT", (done.returncode, done.stderr[-2000:])
