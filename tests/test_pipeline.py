"""The recognition pipeline end to end on real photos: labels, boxes, metadata, thumbnails, bad input."""
from __future__ import annotations

import dataclasses
import io
import json
import threading
import time

import exifread
import numpy as np
import pytest
from PIL import Image

from app_tier.pipeline import (
    CORRUPT_IMAGE, FAILED, IMAGE_TOO_LARGE, INTERNAL_ERROR, SUCCEEDED, UNSUPPORTED_FORMAT, ImageInput, Outcome,
)
from app_tier.pipeline import render
from app_tier.pipeline.decode import decode, open_checked
from tests.pipeline_fixtures import (
    SAMPLES, TESTDATA, encoded, item, jpeg, mean_abs_difference, photo, png_bomb, sample, shared_pipeline,
    with_alpha,
)

pytestmark = pytest.mark.slow  # models loaded

LABEL_KEYS = {"Name", "Confidence", "Instances", "Parents", "Aliases", "Categories", "Source"}
METADATA_KEYS = {"created_at", "gps", "camera_make", "camera_model", "width", "height", "file_size",
                 "file_size_human", "format", "orientation"}


@pytest.fixture(scope="module")
def pipeline():
    return shared_pipeline()


@pytest.fixture(scope="module")
def photos(pipeline) -> dict[str, Outcome]:
    """The skimage photos through the pipeline as one batch."""
    names = ["chelsea", "coffee", "stereo_motorcycle"]
    return dict(zip(names, pipeline.process([item(jpeg(n), n) for n in names])))


def label(outcome: Outcome, fragment: str) -> dict:
    """The first label whose name contains fragment (case-insensitive)."""
    found = [lab for lab in outcome.labels if fragment.lower() in lab["Name"].lower()]
    assert found, f"no label like {fragment!r} in {[lab['Name'] for lab in outcome.labels]}"
    return found[0]


def upright_image(outcome: Outcome) -> Image.Image:
    return Image.open(io.BytesIO(outcome.thumbnail))


@pytest.mark.parametrize("name, expected", [("chelsea", "cat"), ("coffee", "cup"),
                                            ("stereo_motorcycle", "motorcycle")])
def test_detector_finds_the_object_with_a_box(photos, name, expected):
    outcome = photos[name]
    assert outcome.status == SUCCEEDED, outcome.error
    found = label(outcome, expected)
    assert found["Source"] in ("detector", "both")
    assert found["Confidence"] > 80
    box = found["Instances"][0]["BoundingBox"]
    # The subject fills much of each of these photos.
    assert box["Width"] * box["Height"] > 0.15
    assert all(0 <= box[k] <= 1 for k in box) and box["Left"] + box["Width"] <= 1.0001


def test_classifier_names_the_espresso_as_coffee(photos):
    coffee = label(photos["coffee"], "coffee")
    assert coffee["Source"] == "classifier" and coffee["Instances"] == []
    assert coffee["Confidence"] > 80
    assert {"Name": "Espresso"} in coffee["Aliases"]                  # found by the specific name too
    assert {"Name": "Food and Beverage"} in coffee["Categories"]


def test_a_real_cat_is_a_cat_with_its_ancestors_and_no_vehicle(photos):
    names = [lab["Name"] for lab in photos["chelsea"].labels]
    cat = label(photos["chelsea"], "cat")
    assert photos["chelsea"].top_label == cat["Name"] == "Cat" and cat["Instances"]
    parents = [p["Name"] for p in cat["Parents"]]
    assert {"Feline", "Mammal", "Pet", "Animal"} <= set(parents) and parents[-1] == "Animal"
    for ancestor in parents:              # each ancestor is a label of its own, as strong as the cat
        assert label(photos["chelsea"], ancestor)["Confidence"] == cat["Confidence"]
    assert "Vehicle" not in names and not {"Tabby", "Egyptian cat", "Tiger cat"} & set(names)
    assert {"Name": "Animals and Pets"} in cat["Categories"]


def test_result_names_the_models_and_vocabulary(photos, pipeline):
    version = photos["chelsea"].label_model_version
    assert version == pipeline.label_model_version
    assert version.startswith(f"ssd_mobilenet_v2_coco+{pipeline.settings.classifier}+vocabulary-")
    assert version.endswith(pipeline.vocabulary.version)


def test_labels_have_the_rekognition_shape_and_order(photos, pipeline):
    for outcome in photos.values():
        assert outcome.labels and outcome.top_label == outcome.labels[0]["Name"]
        confidences = [lab["Confidence"] for lab in outcome.labels]
        assert confidences == sorted(confidences, reverse=True)
        assert min(confidences) >= pipeline.settings.min_confidence
        assert len(outcome.labels) <= pipeline.settings.max_labels
        assert len({lab["Name"] for lab in outcome.labels}) == len(outcome.labels)
        for lab in outcome.labels:
            assert set(lab) == LABEL_KEYS and lab["Source"] in ("detector", "classifier", "both", "hierarchy")
            info = pipeline.vocabulary.labels[lab["Name"]]              # canonical names only
            assert lab["Confidence"] >= info.threshold or lab["Source"] == "hierarchy"
            assert [p["Name"] for p in lab["Parents"]] == list(pipeline.vocabulary.ancestors(info.name))
            assert all(set(i) == {"BoundingBox", "Confidence"} for i in lab["Instances"])


def test_min_confidence_and_max_labels_apply(pipeline):
    strict = pipeline.with_settings(dataclasses.replace(pipeline.settings, min_confidence=90, max_labels=1))
    outcome, = strict.process([item(jpeg("coffee"))])
    assert [lab["Name"] for lab in outcome.labels] == [outcome.top_label]
    assert outcome.labels[0]["Confidence"] >= 90


def test_result_fields_are_json_without_bytes(photos):
    fields = photos["coffee"].to_result_fields()
    assert set(fields) == {"status", "error", "labels", "weaker_labels", "top_label", "label_model_version", "metadata",
                           "timings", "text_detections", "face_details", "moderation_labels", "image_properties",
                           "review", "model_versions"}
    assert json.loads(json.dumps(fields)) == fields


def test_timings_cover_every_stage(photos):
    timings = photos["chelsea"].timings
    # The stack's default features: labels, faces, properties, and moderation (the default mode flags).
    stages = ["format", "exif", "decode", "thumbnail", "detect", "classify", "properties", "faces", "moderation",
              "merge", "annotate"]
    assert list(timings) == stages + ["total"]
    assert all(timings[s] > 0 for s in stages)
    assert timings["total"] == pytest.approx(sum(timings[s] for s in stages), abs=0.01)


def test_annotated_copy_shows_the_boxes(photos):
    outcome = photos["stereo_motorcycle"]
    assert outcome.annotated_content_type == "image/jpeg"
    annotated = Image.open(io.BytesIO(outcome.annotated)).convert("RGB")
    assert max(annotated.size) <= 1024
    box = label(outcome, "motorcycle")["Instances"][0]["BoundingBox"]
    x = round((box["Left"] + box["Width"] / 2) * annotated.width)
    bottom = int((box["Top"] + box["Height"]) * annotated.height)
    # The first label's box is drawn in the palette's first colour, a strong red, as a line a few
    # pixels wide ending at the box's bottom edge. The copy is a JPEG with 4:2:0 chroma: a line that
    # straddles a 2x2 chroma block shares its colour with the photo beside it (r about 165 instead of
    # 225), so the test looks for the reddest pixel across the edge rather than at one row.
    plain = photo("stereo_motorcycle").resize(annotated.size)
    across = range(bottom - 4, bottom + 2)
    reddest = max((annotated.getpixel((x, y)) for y in across), key=lambda rgb: rgb[0] - rgb[1])
    assert reddish(reddest), reddest
    assert not any(reddish(plain.getpixel((x, y))) for y in across)     # the photo itself is not red there
    assert mean_abs_difference(annotated, plain) > 1


def reddish(rgb: tuple[int, int, int]) -> bool:
    r, g, b = rgb
    return r > 150 and g < 90 and b < 130


def test_thumbnail_fits_the_box_and_keeps_the_aspect(photos):
    thumb = upright_image(photos["chelsea"])
    assert photos["chelsea"].thumbnail_content_type == "image/jpeg" and thumb.format == "JPEG"
    assert thumb.size == (250, 166)
    assert mean_abs_difference(thumb, photo("chelsea")) < 12


@pytest.mark.parametrize("kind", ["landscape", "portrait"])
def test_every_orientation_comes_out_upright(pipeline, kind):
    paths = [SAMPLES / "jpg" / "orientation" / f"{kind}_{n}.jpg" for n in range(1, 9)]
    outcomes = pipeline.process([item(p.read_bytes(), p.name) for p in paths])
    assert [o.metadata["orientation"] for o in outcomes] == list(range(1, 9))
    reference = upright_image(outcomes[0])
    for path, outcome in zip(paths, outcomes):
        thumb = upright_image(outcome)
        assert thumb.size == reference.size, path.name
        assert mean_abs_difference(reference, thumb) < 8, path.name
        assert (outcome.metadata["width"] > outcome.metadata["height"]) == (kind == "landscape")
    # The comparison can fail: the same picture turned over is far from upright.
    assert mean_abs_difference(reference, reference.transpose(Image.Transpose.ROTATE_180)) > 30


def test_model_inputs_are_upright_too(pipeline):
    paths = [SAMPLES / "jpg" / "orientation" / f"landscape_{n}.jpg" for n in (1, 3, 6, 8)]
    # Rotated inputs would shift the classifier's guesses; upright ones agree with the original. (The
    # files are separate JPEG encodings, so the guesses move a little: the original's first stays in the top three.)
    top3 = []
    for path in paths:
        rgb = np.asarray(decode(open_checked(path.read_bytes(), "JPEG", pipeline.settings.max_pixels),
                                pipeline.settings.annotated_max_side).rgb)
        top3.append(np.argsort(-pipeline.classifier.run([pipeline.classifier.prepare(rgb)])[0])[:3].tolist())
    assert pipeline.classifier.names[top3[0][0]] == "fountain"
    assert all(top3[0][0] in guesses for guesses in top3), top3


def _decimal(tags: dict, key: str) -> float:
    degrees, minutes, seconds = (v.num / v.den for v in tags[f"GPS GPS{key}"].values)
    value = degrees + minutes / 60 + seconds / 3600
    return -value if str(tags[f"GPS GPS{key}Ref"]) in ("S", "W") else value


@pytest.mark.parametrize("name", ["DSCN0010.jpg", "DSCN0021.jpg", "DSCN0027.jpg"])
def test_gps_matches_exifread(pipeline, name):
    data = sample(f"jpg/gps/{name}")
    outcome, = pipeline.process([item(data, name)])
    tags = exifread.process_file(io.BytesIO(data), details=False)
    gps = outcome.metadata["gps"]
    assert gps["latitude_decimal"] == pytest.approx(_decimal(tags, "Latitude"), abs=1e-6)
    assert gps["longitude_decimal"] == pytest.approx(_decimal(tags, "Longitude"), abs=1e-6)
    assert gps["latitude"]["direction"] == str(tags["GPS GPSLatitudeRef"])
    assert gps["latitude"]["degrees"] == float(tags["GPS GPSLatitude"].values[0])


def test_camera_and_time_from_canon_40d(pipeline):
    outcome, = pipeline.process([item(sample("jpg/Canon_40D.jpg"))])
    meta = outcome.metadata
    assert set(meta) == METADATA_KEYS
    assert (meta["camera_make"], meta["camera_model"]) == ("Canon", "Canon EOS 40D")
    assert meta["created_at"] == "2008-05-30T15:56:01"
    assert (meta["width"], meta["height"], meta["format"], meta["orientation"]) == (100, 68, "JPEG", 1)
    assert meta["file_size"] == len(sample("jpg/Canon_40D.jpg")) and meta["file_size_human"] == "8.0 kB"


def _expected(path) -> str | None:
    """The error code each shared test file must get (None: it must succeed)."""
    return UNSUPPORTED_FORMAT if path.suffix in (".tiff", ".heif", ".md") else None


ALL_FILES = sorted(p for p in TESTDATA.rglob("*") if p.is_file())


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(TESTDATA)))
def test_every_shared_file_gets_a_precise_answer_in_time(pipeline, path):
    started = time.monotonic()
    outcome, = pipeline.process([item(path.read_bytes(), path.name)])
    assert time.monotonic() - started < pipeline.settings.image_timeout_s
    expected = _expected(path)
    if expected is None:
        assert outcome.status == SUCCEEDED, outcome.error
        assert outcome.thumbnail and outcome.annotated
    else:
        assert outcome.status == FAILED and outcome.error["code"] == expected
        assert outcome.thumbnail is None and outcome.labels == []


def test_damaged_jpeg_decodes_to_the_real_picture(pipeline):
    # corrupted.jpg: libjpeg only warns of a premature end of one data segment and Pillow
    # decodes the whole photo; it is accepted because the pixels are real, not grey filler.
    outcome, = pipeline.process([item(sample("jpg/corrupted.jpg"))])
    assert outcome.status == SUCCEEDED
    thumb = np.asarray(upright_image(outcome).convert("L"), np.float32)
    bottom = thumb[-thumb.shape[0] // 4:]
    assert bottom.std() > 20 and abs(bottom.mean() - 128) > 5


@pytest.mark.parametrize("make, code, fragment", [
    (lambda: b"", UNSUPPORTED_FORMAT, "empty"),
    (lambda: b"Dear customer, here is the photo you asked for.\n", UNSUPPORTED_FORMAT, "plain text"),
    (lambda: encoded(photo("chelsea"), "GIF"), UNSUPPORTED_FORMAT, "GIF images are not supported"),
    (lambda: encoded(photo("chelsea"), "WEBP"), UNSUPPORTED_FORMAT, "WEBP images are not supported"),
    (lambda: jpeg("chelsea")[:9000], CORRUPT_IMAGE, "truncated"),
    (lambda: sample("jpg/gps/DSCN0010.jpg")[:60000], CORRUPT_IMAGE, "truncated"),
    (lambda: encoded(photo("coffee"), "PNG")[:30000], CORRUPT_IMAGE, "PNG"),
    (lambda: b"\xff\xd8\xff" + bytes(range(256)) * 8, CORRUPT_IMAGE, "JPEG"),
    (lambda: png_bomb(), IMAGE_TOO_LARGE, "has 10,000.0 megapixels; the limit is 50.0 megapixels"),
], ids=["empty", "text", "gif", "webp", "truncated-jpeg", "truncated-large-jpeg", "truncated-png",
        "jpeg-garbage", "png-bomb"])
def test_bad_input_fails_with_a_precise_code(pipeline, make, code, fragment):
    outcome, = pipeline.process([ImageInput(id="bad", data=make(), filename="photo.jpg")])
    assert outcome.status == FAILED and outcome.error["code"] == code
    assert fragment in outcome.error["message"]
    assert set(outcome.metadata) == METADATA_KEYS and outcome.timings["total"] >= 0


def test_pixel_limit_is_configurable(pipeline):
    small = pipeline.with_settings(dataclasses.replace(pipeline.settings, max_pixels=100_000))
    outcome, = small.process([item(jpeg("chelsea"))])
    assert outcome.error == {"code": IMAGE_TOO_LARGE, "message": "the image is 451x300 (0.1 megapixels); "
                                                                 "the limit is 0.1 megapixels"}


def test_transparency_is_kept_in_a_png_thumbnail(pipeline):
    outcome, = pipeline.process([item(encoded(with_alpha(photo("chelsea")), "PNG"))])
    assert outcome.status == SUCCEEDED and outcome.metadata["format"] == "PNG"
    assert outcome.thumbnail_content_type == "image/png"
    thumb = upright_image(outcome)
    assert thumb.mode == "RGBA"
    alpha = np.asarray(thumb.getchannel("A"))
    assert alpha[:, :100].max() < 10 and alpha[:, -100:].min() > 245
    # The models see the picture flattened on white, and still find the cat in the opaque half.
    assert label(outcome, "cat")


def test_unused_alpha_and_odd_modes_give_jpeg_thumbnails(pipeline):
    chelsea = photo("chelsea")
    grey16 = Image.fromarray(np.asarray(chelsea.convert("L"), np.uint16) * 257)
    inputs = [encoded(chelsea.convert("RGBA"), "PNG"), encoded(chelsea.convert("L"), "JPEG"),
              encoded(chelsea.convert("CMYK"), "JPEG"), encoded(chelsea.convert("P"), "PNG"),
              encoded(grey16, "PNG")]
    for outcome in pipeline.process([item(data) for data in inputs]):
        assert outcome.status == SUCCEEDED, outcome.error
        assert outcome.thumbnail_content_type == "image/jpeg"
        assert mean_abs_difference(upright_image(outcome).convert("L").convert("RGB"),
                                   chelsea.convert("L").convert("RGB")) < 12


def test_progressive_and_multi_picture_jpegs_are_jpegs(pipeline):
    big = photo("coffee").resize((2400, 1600))
    inputs = [encoded(big, "JPEG", progressive=True, quality=85),
              encoded(big, "MPO", save_all=True, append_images=[photo("chelsea")])]
    for outcome in pipeline.process([item(data) for data in inputs]):
        assert outcome.status == SUCCEEDED, outcome.error
        assert (outcome.metadata["format"], outcome.metadata["width"]) == ("JPEG", 2400)
        assert label(outcome, "cup")


def test_extreme_shapes_succeed(pipeline):
    inputs = [encoded(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"),
              encoded(photo("coffee").resize((4000, 3)), "JPEG"), encoded(photo("coffee").resize((2, 3000)), "PNG")]
    for outcome in pipeline.process([item(data) for data in inputs]):
        assert outcome.status == SUCCEEDED, outcome.error
        assert max(upright_image(outcome).size) <= 250 and outcome.annotated


def test_mixed_batch_keeps_order_and_isolates_failures(pipeline):
    inputs = [item(jpeg("chelsea"), "cat"), item(b"", "empty"), item(jpeg("coffee"), "cup"),
              item(jpeg("coffee")[:5000], "truncated"), item(png_bomb(), "bomb"),
              item(encoded(photo("chelsea"), "GIF"), "gif"), item(jpeg("stereo_motorcycle"), "motorcycle")]
    outcomes = pipeline.process(inputs)
    assert [o.id for o in outcomes] == [i.id for i in inputs]
    assert [o.status for o in outcomes] == [SUCCEEDED, FAILED, SUCCEEDED, FAILED, FAILED, FAILED, SUCCEEDED]
    assert [o.error["code"] for o in outcomes if o.error] == [
        UNSUPPORTED_FORMAT, CORRUPT_IMAGE, IMAGE_TOO_LARGE, UNSUPPORTED_FORMAT]
    for index, expected in ((0, "cat"), (2, "cup"), (6, "motorcycle")):
        assert label(outcomes[index], expected)


def test_no_images_no_outcomes(pipeline):
    assert pipeline.process([]) == []


def test_a_bug_on_one_image_fails_only_that_image(pipeline, monkeypatch):
    real_annotate = render.annotate

    def annotate_or_break(rgb, labels, quality, *boxes):
        if labels and labels[0]["Name"] == "Cat":
            raise KeyError("simulated bug")
        return real_annotate(rgb, labels, quality, *boxes)

    monkeypatch.setattr(render, "annotate", annotate_or_break)
    cat, cup = pipeline.process([item(jpeg("chelsea"), "cat"), item(jpeg("coffee"), "cup")])
    assert cat.error["code"] == INTERNAL_ERROR and "KeyError" in cat.error["message"]
    assert cup.status == SUCCEEDED


def test_a_failing_model_batch_is_retried_one_by_one(pipeline, monkeypatch):
    batched = pipeline.with_settings(dataclasses.replace(pipeline.settings, classifier_batch_size=3))
    real_run = batched.classifier.run

    def refuse_dark_inputs(inputs):          # the prepared inputs are RGB uint8; the dark one is all 5s
        if any(float(x.mean()) < 32 for x in inputs):
            raise RuntimeError("simulated model failure")
        return real_run(inputs)

    monkeypatch.setattr(batched.classifier, "run", refuse_dark_inputs)
    dark = encoded(Image.new("RGB", (300, 300), (5, 5, 5)), "PNG")
    outcomes = batched.process([item(jpeg("chelsea")), item(dark), item(jpeg("coffee"))])
    assert [o.status for o in outcomes] == [SUCCEEDED, FAILED, SUCCEEDED]
    assert outcomes[1].error["code"] == INTERNAL_ERROR
    assert label(outcomes[2], "coffee")


def test_batch_sizes_do_not_change_results(pipeline):
    names = ["chelsea", "coffee", "astronaut", "stereo_motorcycle"]
    inputs = [item(jpeg(n), n) for n in names]
    one = pipeline.process(inputs)
    batched = pipeline.with_settings(dataclasses.replace(
        pipeline.settings, detector_batch_size=4, classifier_batch_size=3)).process(inputs)
    for a, b in zip(one, batched):
        assert [lab["Name"] for lab in a.labels] == [lab["Name"] for lab in b.labels]
        for x, y in zip(a.labels, b.labels):
            assert x["Confidence"] == pytest.approx(y["Confidence"], abs=0.5)


def test_stream_prepares_the_next_images_while_the_models_run(pipeline, monkeypatch):
    """Forward passes run on the models thread; by the time image 0 is finished, images 1 and 2 are prepared."""
    events, arrived = [], []
    real_prepare, real_finish, real_forward = pipeline._prepare, pipeline._finish, pipeline.classifier.forward

    def recorded(name, real):
        def step(work):
            events.append((name, work.input.id))
            return real(work)
        return step

    def forward(batch):
        events.append(("forward", threading.current_thread().name))
        return real_forward(batch)

    def arriving(names):
        for name in names:
            arrived.append(name)       # taken only as the stream asks for it
            yield item(jpeg(name), name)

    monkeypatch.setattr(pipeline, "_prepare", recorded("prepare", real_prepare))
    monkeypatch.setattr(pipeline, "_finish", recorded("finish", real_finish))
    monkeypatch.setattr(pipeline.classifier, "forward", forward)
    names = ["chelsea", "coffee", "astronaut", "stereo_motorcycle"]
    stream = pipeline.stream(arriving(names))
    first = next(stream)
    assert first.id == "chelsea" and arrived == names[:3]
    rest = list(stream)
    assert [o.id for o in [first, *rest]] == names and all(o.status == SUCCEEDED for o in rest)
    order = [e for e in events if e[0] != "forward"]
    assert order.index(("prepare", "coffee")) < order.index(("finish", "chelsea"))
    assert order.index(("prepare", "astronaut")) < order.index(("finish", "chelsea"))
    threads = {name for kind, name in events if kind == "forward"}
    assert len(threads) == 1 and threads.pop().startswith("models")
