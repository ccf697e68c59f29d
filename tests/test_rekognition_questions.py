"""DetectText, DetectFaces and DetectModerationLabels read and answered (web_tier/rekognition/questions.py), as tables.

Every answer is checked strictly against botocore's output shape for its operation.
"""
from __future__ import annotations

import base64

import pytest

from tests.aws_shapes import assert_output_shape
from web_tier.rekognition.protocol import ANSWERED, AwsError
from web_tier.rekognition.questions import (DEFAULT_WORD_CONFIDENCE, OPERATIONS, DetectFaces, DetectModerationLabels,
                                            DetectText, faces_answer, moderation_answer, more_than_half_inside,
                                            parse_detect_faces, parse_detect_moderation_labels, parse_detect_text,
                                            text_answer)

PHOTO = base64.b64encode(b"\xff\xd8\xff" + b"x" * 100).decode()
IMAGE = {"Bytes": PHOTO}


def detection(text: str, kind: str, ident: int, box: tuple[float, float, float, float], confidence: float,
              parent: int | None = None) -> dict:
    left, top, width, height = box
    found = {"DetectedText": text, "Type": kind, "Id": ident, "Confidence": confidence,
             "Geometry": {"BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top},
                          "Polygon": [{"X": left, "Y": top}, {"X": left + width, "Y": top},
                                      {"X": left + width, "Y": top + height}, {"X": left, "Y": top + height}]}}
    return found if parent is None else {**found, "ParentId": parent}


# Two lines: "STOP HERE" at the top left (a small, unsure "HERE"), "EXIT" at the bottom right.
TEXT = {"model_versions": {"text": "paddleocr-det+rec-1"}, "text_detections": [
    detection("STOP HERE", "LINE", 0, (0.1, 0.1, 0.4, 0.1), 95.0),
    detection("EXIT", "LINE", 1, (0.6, 0.8, 0.3, 0.1), 90.0),
    detection("STOP", "WORD", 2, (0.1, 0.1, 0.2, 0.1), 97.0, parent=0),
    detection("HERE", "WORD", 3, (0.32, 0.12, 0.1, 0.02), 70.0, parent=0),
    detection("EXIT", "WORD", 4, (0.6, 0.8, 0.3, 0.1), 90.0, parent=1)]}
TOP_LEFT = {"BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.0, "Top": 0.0}}
TRIANGLE = {"Polygon": [{"X": 0.5, "Y": 0.5}, {"X": 1.0, "Y": 0.5}, {"X": 1.0, "Y": 1.0}]}


def test_every_operation_answered_has_a_reader_and_an_answer():
    assert set(OPERATIONS) == set(ANSWERED)


@pytest.mark.parametrize("parse, body", [
    (parse_detect_text, {"Image": IMAGE, "MinConfidence": 50}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"WordFilter": {"MinConfidence": 101}}}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"WordFilter": {"MinBoundingBoxHeight": 1.5}}}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"WordFilter": {"MinHeight": 0.1}}}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"RegionsOfInterest": [TOP_LEFT] * 11}}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"RegionsOfInterest": [{}]}}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"RegionsOfInterest": [{**TOP_LEFT, **TRIANGLE}]}}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"RegionsOfInterest": [{"BoundingBox": {"Width": 0.5}}]}}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"RegionsOfInterest": [{"Polygon": [{"X": 0, "Y": 0}]}]}}),
    (parse_detect_text, {"Image": IMAGE, "Filters": {"RegionsOfInterest": [{"Polygon": [{"X": 2, "Y": 0}] * 3}]}}),
    (parse_detect_text, {"Image": {}}),
    (parse_detect_faces, {"Image": IMAGE, "Attributes": ["IDENTITY"]}),
    (parse_detect_faces, {"Image": IMAGE, "Attributes": "ALL"}),
    (parse_detect_faces, {"Image": IMAGE, "MaxFaces": 3}),
    (parse_detect_moderation_labels, {"Image": IMAGE, "MinConfidence": -1}),
    (parse_detect_moderation_labels, {"Image": IMAGE, "HumanLoopConfig": {"HumanLoopName": "x"}}),
    (parse_detect_moderation_labels, {"Image": IMAGE, "HumanLoopConfig": {"HumanLoopName": "Upper_case",
                                                                         "FlowDefinitionArn": "arn"}}),
    (parse_detect_moderation_labels, {"Image": IMAGE, "HumanLoopConfig": {
        "HumanLoopName": "x", "FlowDefinitionArn": "arn", "DataAttributes": {"ContentClassifiers": ["Nope"]}}}),
    (parse_detect_moderation_labels, {"Image": IMAGE, "MaxLabels": 3}),
], ids=lambda value: str(value)[:50])
def test_parameters_off_the_model_are_invalid_parameters(parse, body):
    with pytest.raises(AwsError) as caught:
        parse(body)
    assert caught.value.aws_type == "InvalidParameterException" and caught.value.status == 400 and caught.value.message


def test_a_custom_moderation_adapter_is_a_resource_this_server_does_not_have():
    arn = "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v/1"
    with pytest.raises(AwsError) as caught:
        parse_detect_moderation_labels({"Image": IMAGE, "ProjectVersion": arn})
    assert caught.value.aws_type == "ResourceNotFoundException"


def test_calls_are_read_whole_and_each_names_only_its_own_feature():
    text = parse_detect_text({"Image": IMAGE, "Filters": {"WordFilter": {"MinBoundingBoxWidth": 0.05},
                                                          "RegionsOfInterest": [TOP_LEFT, TRIANGLE]}})
    assert text.features == ("text",) and text.min_confidence == DEFAULT_WORD_CONFIDENCE and text.min_width == 0.05
    assert text.regions[0] == ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)) and len(text.regions[1]) == 3
    assert parse_detect_text({"Image": IMAGE}).min_confidence is None
    faces = parse_detect_faces({"Image": IMAGE, "Attributes": ["ALL", "DEFAULT"]})
    assert faces.features == ("faces",) and faces.attributes == ("ALL", "DEFAULT")
    loop = {"HumanLoopName": "review-1", "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:1:flow-definition/f"}
    moderation = parse_detect_moderation_labels({"Image": IMAGE, "MinConfidence": 75, "HumanLoopConfig": loop})
    assert moderation.features == ("moderation",) and moderation.min_confidence == 75.0
    assert parse_detect_moderation_labels({"Image": IMAGE}).min_confidence == 50.0


@pytest.mark.parametrize("box, regions, inside", [
    ({"Left": 0.1, "Top": 0.1, "Width": 0.2, "Height": 0.1}, [TOP_LEFT], True),
    ({"Left": 0.4, "Top": 0.1, "Width": 0.2, "Height": 0.1}, [TOP_LEFT], False),     # exactly half: not more
    ({"Left": 0.35, "Top": 0.1, "Width": 0.2, "Height": 0.1}, [TOP_LEFT], True),     # three quarters
    ({"Left": 0.8, "Top": 0.55, "Width": 0.1, "Height": 0.1}, [TRIANGLE], True),     # under the diagonal
    ({"Left": 0.55, "Top": 0.8, "Width": 0.1, "Height": 0.1}, [TRIANGLE], False),    # above it
    ({"Left": 0.55, "Top": 0.8, "Width": 0.1, "Height": 0.1}, [TRIANGLE, TOP_LEFT, {"BoundingBox": {
        "Left": 0.5, "Top": 0.75, "Width": 0.5, "Height": 0.25}}], True),              # any region will do
    ({"Left": 0.1, "Top": 0.1, "Width": 0.0, "Height": 0.1}, [TOP_LEFT], False),
    ({"Left": 0.9, "Top": 0.9, "Width": 0.1, "Height": 0.1}, [], True),
], ids=["inside", "half", "three-quarters", "polygon-in", "polygon-out", "another-region", "empty-box", "none"])
def test_a_box_is_in_a_region_when_more_than_half_of_it_is(box, regions, inside):
    parsed = parse_detect_text({"Image": IMAGE, "Filters": {"RegionsOfInterest": regions}}).regions
    assert more_than_half_inside(box, parsed) is inside


@pytest.mark.parametrize("filters, texts", [
    ({}, ["STOP HERE", "EXIT", "STOP", "HERE", "EXIT"]),
    ({"WordFilter": {}}, ["STOP HERE", "EXIT", "STOP", "EXIT"]),                     # MinConfidence 80 by default
    ({"WordFilter": {"MinConfidence": 0}}, ["STOP HERE", "EXIT", "STOP", "HERE", "EXIT"]),
    ({"WordFilter": {"MinConfidence": 0, "MinBoundingBoxHeight": 0.05}}, ["STOP HERE", "EXIT", "STOP", "EXIT"]),
    ({"WordFilter": {"MinConfidence": 0, "MinBoundingBoxWidth": 0.25}}, ["EXIT", "EXIT"]),
    ({"WordFilter": {"MinConfidence": 99}}, []),
    ({"RegionsOfInterest": [TOP_LEFT]}, ["STOP HERE", "STOP", "HERE"]),
    ({"RegionsOfInterest": [{"Polygon": [{"X": 0.5, "Y": 0.5}, {"X": 1.0, "Y": 1.0}, {"X": 0.5, "Y": 1.0}]}]},
     ["EXIT", "EXIT"]),
], ids=["none", "default-word-filter", "all-words", "height", "width", "none-left", "region", "polygon"])
def test_text_filters_keep_the_words_they_allow_and_the_lines_of_those_words(filters, texts):
    answer = text_answer(TEXT, parse_detect_text({"Image": IMAGE, "Filters": filters}))
    assert_output_shape("rekognition", "DetectText", answer)
    assert [found["DetectedText"] for found in answer["TextDetections"]] == texts
    assert answer["TextModelVersion"] == "paddleocr-det+rec-1"


def test_text_detections_have_exactly_rekognitions_shape():
    answer = text_answer({"text_detections": [{**TEXT["text_detections"][2], "Extra": "dropped"}]}, DetectText())
    word = answer["TextDetections"][0]
    assert list(word) == ["DetectedText", "Type", "Id", "ParentId", "Confidence", "Geometry"]
    assert word["Geometry"]["Polygon"][0] == {"X": 0.1, "Y": 0.1} and answer["TextModelVersion"]
    assert text_answer({"text_detections": []}, DetectText()) == {"TextDetections": [],
                                                                  "TextModelVersion": "sightfleet-1"}


FACE = {"BoundingBox": {"Width": 0.2, "Height": 0.3, "Left": 0.4, "Top": 0.1}, "Confidence": 99.1,
        "Landmarks": [{"Type": "eyeLeft", "X": 0.45, "Y": 0.2}, {"Type": "eyeRight", "X": 0.55, "Y": 0.2},
                      {"Type": "nose", "X": 0.5, "Y": 0.27}, {"Type": "thirdEye", "X": 0.5, "Y": 0.15}],
        "Pose": {"Roll": 2.0, "Yaw": -10.5, "Pitch": 4.0}, "Quality": {"Brightness": 60.0, "Sharpness": 70.0},
        "Identity": "never returned"}


@pytest.mark.parametrize("attributes", [["DEFAULT"], ["ALL"], ["ALL", "DEFAULT"], ["SMILE"]])
def test_faces_come_back_with_rekognitions_default_attributes_whatever_is_asked(attributes):
    answer = faces_answer({"face_details": [FACE]}, parse_detect_faces({"Image": IMAGE, "Attributes": attributes}))
    assert_output_shape("rekognition", "DetectFaces", answer)
    face = answer["FaceDetails"][0]
    assert set(face) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
    assert [mark["Type"] for mark in face["Landmarks"]] == ["eyeLeft", "eyeRight", "nose"]
    assert "OrientationCorrection" not in answer
    assert faces_answer({"face_details": []}, DetectFaces()) == {"FaceDetails": []}


MODERATION = {"model_versions": {"moderation": "nsfw-mobilenet-2"}, "moderation_labels": [
    {"Name": "Explicit", "ParentName": "", "Confidence": 91.0, "TaxonomyLevel": 1},
    {"Name": "Explicit Nudity", "ParentName": "Explicit", "Confidence": 88.0, "TaxonomyLevel": 2},
    {"Name": "Violence", "ParentName": "", "Confidence": 40.0, "TaxonomyLevel": 1}]}


@pytest.mark.parametrize("min_confidence, names", [
    (None, ["Explicit", "Explicit Nudity"]), (0, ["Explicit", "Explicit Nudity", "Violence"]), (90, ["Explicit"]),
    (95, [])])
def test_moderation_labels_at_or_above_min_confidence(min_confidence, names):
    body = {"Image": IMAGE, **({} if min_confidence is None else {"MinConfidence": min_confidence})}
    answer = moderation_answer(MODERATION, parse_detect_moderation_labels(body))
    assert_output_shape("rekognition", "DetectModerationLabels", answer)
    assert [label["Name"] for label in answer["ModerationLabels"]] == names
    assert answer["ModerationModelVersion"] == "nsfw-mobilenet-2" and "HumanLoopActivationOutput" not in answer
    assert moderation_answer({}, DetectModerationLabels())["ModerationLabels"] == []
