"""Reading DetectLabels calls and writing their answers (web_tier/rekognition/protocol.py), as table tests."""
from __future__ import annotations

import base64

import pytest

from tests.aws_shapes import assert_output_shape
from web_tier.rekognition.protocol import (AwsError, DetectLabels, LabelFilters, as_aws_error, failed_as_aws_error,
                                           labels_answer, operation_of, parse_detect_labels)

PHOTO = base64.b64encode(b"\xff\xd8\xff" + b"x" * 100).decode()
RESULT = {"label_model_version": "ssd-mobilenet-v2+efficientnet-lite0+vocab-1", "labels": [
    {"Name": "Cat", "Confidence": 91.5, "Source": "both",
     "Instances": [{"BoundingBox": {"Width": 0.5, "Height": 0.6, "Left": 0.1, "Top": 0.2}, "Confidence": 91.5}],
     "Parents": [{"Name": "Pet"}, {"Name": "Animal"}], "Aliases": [{"Name": "Kitty"}],
     "Categories": [{"Name": "Animals and Pets"}]},
    {"Name": "Animal", "Confidence": 91.5, "Instances": [], "Parents": [], "Categories": [{"Name": "Animals and Pets"}]},
    {"Name": "Couch", "Confidence": 60.0, "Instances": [], "Parents": ["Furniture"],
     "Categories": [{"Name": "Home and Indoors"}]},
    {"Name": "Remote control", "Confidence": 40.0, "Instances": []},
]}


@pytest.mark.parametrize("body, aws_type", [
    ("not a dict", "SerializationException"),
    ({}, "InvalidParameterException"),
    ({"Image": {}}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO, "S3Object": {"Bucket": "abc", "Name": "k"}}}, "InvalidParameterException"),
    ({"Image": {"Bytes": "%%%not base64"}}, "InvalidParameterException"),
    ({"Image": {"Bytes": ""}}, "InvalidParameterException"),
    ({"Image": {"Bytes": "A" * (8 * 2**20)}}, "ImageTooLargeException"),
    ({"Image": {"S3Object": {"Bucket": "ab", "Name": "k"}}}, "InvalidParameterException"),
    ({"Image": {"S3Object": {"Name": "k"}}}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "MaxLabels": -1}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "MaxLabels": 2.5}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "MaxLabels": True}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "MinConfidence": 101}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "MinConfidence": "high"}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "Features": ["FACES"]}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "Features": "IMAGE_PROPERTIES"}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "Settings": {"ImageProperties": {"MaxDominantColors": 21}}},
     "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "Settings": {"ImageProperties": {"Colors": 2}}}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "Settings": {"GeneralLabels": {"LabelInclusionFilters": "Cat"}}},
     "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "Settings": {"GeneralLabels": {"LabelInclusionFilters": ["<script>"]}}},
     "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "Settings": {"Other": {}}}, "InvalidParameterException"),
    ({"Image": {"Bytes": PHOTO}, "Unknown": 1}, "InvalidParameterException"),
], ids=lambda value: str(value)[:40])
def test_malformed_calls_are_refused_with_rekognitions_exception(body, aws_type):
    with pytest.raises(AwsError) as caught:
        parse_detect_labels(body)
    assert caught.value.aws_type == aws_type and caught.value.status == 400 and caught.value.message


def test_a_well_formed_call_is_read_whole():
    call = parse_detect_labels({"Image": {"Bytes": PHOTO}, "MaxLabels": 3, "MinConfidence": 70.5,
                                "Features": ["GENERAL_LABELS"], "Settings": {"GeneralLabels": {
                                    "LabelInclusionFilters": ["Cat "], "LabelCategoryExclusionFilters": ["Food"]}}})
    assert call.image_bytes.startswith(b"\xff\xd8") and call.max_labels == 3 and call.min_confidence == 70.5
    assert call.filters == LabelFilters(include=frozenset({"cat"}), exclude_categories=frozenset({"food"}))
    s3 = parse_detect_labels({"Image": {"S3Object": {"Bucket": "b-in", "Name": "originals/o/x.jpg"}}})
    assert (s3.image_bytes, s3.s3_bucket, s3.s3_key, s3.min_confidence) == (None, "b-in", "originals/o/x.jpg", None)


@pytest.mark.parametrize("call, names", [
    (DetectLabels(), ["Cat", "Animal", "Couch"]),
    (DetectLabels(min_confidence=0), ["Cat", "Animal", "Couch", "Remote control"]),
    (DetectLabels(min_confidence=90), ["Cat", "Animal"]),
    (DetectLabels(max_labels=1), ["Cat"]),
    (DetectLabels(max_labels=0), []),
    (DetectLabels(filters=LabelFilters(include=frozenset({"couch"}))), ["Couch"]),
    (DetectLabels(filters=LabelFilters(exclude=frozenset({"cat"}))), ["Animal", "Couch"]),
    (DetectLabels(filters=LabelFilters(include_categories=frozenset({"animals and pets"}))), ["Cat", "Animal"]),
    (DetectLabels(filters=LabelFilters(exclude_categories=frozenset({"animals and pets"}))), ["Couch"]),
], ids=["default", "all", "confident", "max-1", "max-0", "include", "exclude", "category-in", "category-out"])
def test_answers_are_filtered_as_rekognition_filters(call, names):
    answer = labels_answer(RESULT, call)
    assert [label["Name"] for label in answer["Labels"]] == names
    assert_output_shape("rekognition", "DetectLabels", answer)


def test_a_given_min_confidence_brings_back_what_the_vocabulary_thresholds_left_out():
    result = {**RESULT, "weaker_labels": [{"Name": "Sofa bed", "Confidence": 42.0, "Instances": []},
                                          {"Name": "Cat", "Confidence": 30.0, "Instances": []}]}
    default = [label["Name"] for label in labels_answer(result, DetectLabels())["Labels"]]
    lowered = [label["Name"] for label in labels_answer(result, DetectLabels(min_confidence=40))["Labels"]]
    assert "Sofa bed" not in default and lowered == ["Cat", "Animal", "Couch", "Sofa bed", "Remote control"]
    assert labels_answer(result, DetectLabels(min_confidence=40))["Labels"][0]["Confidence"] == 91.5


def test_an_answer_has_exactly_rekognitions_label_shape():
    cat = labels_answer(RESULT, DetectLabels())["Labels"][0]
    assert cat == {"Name": "Cat", "Confidence": 91.5,
                   "Instances": [{"BoundingBox": {"Width": 0.5, "Height": 0.6, "Left": 0.1, "Top": 0.2},
                                  "Confidence": 91.5}],
                   "Parents": [{"Name": "Pet"}, {"Name": "Animal"}], "Aliases": [{"Name": "Kitty"}],
                   "Categories": [{"Name": "Animals and Pets"}]}
    couch = labels_answer(RESULT, DetectLabels())["Labels"][2]
    assert couch["Parents"] == [{"Name": "Furniture"}] and couch["Aliases"] == []


@pytest.mark.parametrize("target, aws_type", [
    (None, "UnknownOperationException"), ("S3.GetObject", "UnknownOperationException"),
    ("RekognitionService.CompareFaces", "UnsupportedOperationException"),
    ("RekognitionService.SearchFacesByImage", "UnsupportedOperationException"),
    ("RekognitionService.IndexFaces", "UnsupportedOperationException")])
def test_operations_this_server_cannot_answer_are_refused_never_made_up(target, aws_type):
    with pytest.raises(AwsError) as caught:
        operation_of(target)
    assert caught.value.aws_type == aws_type
    for name in ("DetectLabels", "DetectText", "DetectFaces", "DetectModerationLabels"):
        assert operation_of(f"RekognitionService.{name}") == name


@pytest.mark.parametrize("status, code, aws_type, aws_status", [
    (429, "RATE_LIMITED", "ThrottlingException", 400),
    (429, "QUOTA_EXCEEDED", "ServiceQuotaExceededException", 400),
    (401, "UNAUTHENTICATED", "MissingAuthenticationTokenException", 403),
    (403, "InvalidSignatureException", "InvalidSignatureException", 403),
    (413, "REQUEST_TOO_LARGE", "ImageTooLargeException", 400),
    (415, "UNSUPPORTED_FORMAT", "InvalidImageFormatException", 400),
    (503, "UNAVAILABLE", "InternalServerError", 500),
    (404, "NOT_FOUND", "InvalidParameterException", 400),
    (403, "FORBIDDEN", "AccessDeniedException", 400),
    (500, "INTERNAL_SERVER_ERROR", "InternalServerError", 500),
])
def test_the_services_own_refusals_become_rekognitions_exceptions(status, code, aws_type, aws_status):
    error = as_aws_error(status, code, "why")
    assert (error.aws_type, error.status, error.body()) == (aws_type, aws_status, {"__type": aws_type,
                                                                                   "message": "why"})


PROPERTIES = {"Quality": {"Brightness": 61.2, "Sharpness": 80.0, "Contrast": 44.5},
              "DominantColors": [{"Red": 200, "Green": 10, "Blue": 10, "HexCode": "#c80a0a", "CSSColor": "firebrick",
                                  "SimplifiedColor": "red", "PixelPercent": 61.0},
                                 {"Red": 0, "Green": 0, "Blue": 250, "HexCode": "#0000fa", "CSSColor": "blue",
                                  "SimplifiedColor": "blue", "PixelPercent": 39.0}],
              "Foreground": {"Quality": {"Brightness": 70.0, "Sharpness": 90.0}, "DominantColors": []}}


@pytest.mark.parametrize("features, asked", [
    (None, ("labels",)), (["GENERAL_LABELS"], ("labels",)), (["IMAGE_PROPERTIES"], ("properties",)),
    (["GENERAL_LABELS", "IMAGE_PROPERTIES"], ("labels", "properties"))])
def test_features_name_exactly_the_stages_a_call_needs(features, asked):
    body = {"Image": {"Bytes": PHOTO}, **({"Features": features} if features else {})}
    assert parse_detect_labels(body).features == asked


def test_image_properties_come_back_in_rekognitions_shape_with_at_most_the_colors_asked():
    result = {**RESULT, "image_properties": PROPERTIES}
    only = parse_detect_labels({"Image": {"Bytes": PHOTO}, "Features": ["IMAGE_PROPERTIES"],
                                "Settings": {"ImageProperties": {"MaxDominantColors": 1}}})
    answer = labels_answer(result, only)
    assert_output_shape("rekognition", "DetectLabels", answer)
    assert answer["Labels"] == [] and answer["ImageProperties"]["Quality"] == PROPERTIES["Quality"]
    assert [c["SimplifiedColor"] for c in answer["ImageProperties"]["DominantColors"]] == ["red"]
    assert answer["ImageProperties"]["Foreground"] == {"Quality": {"Brightness": 70.0, "Sharpness": 90.0},
                                                      "DominantColors": []}
    both = labels_answer(result, parse_detect_labels({"Image": {"Bytes": PHOTO},
                                                      "Features": ["GENERAL_LABELS", "IMAGE_PROPERTIES"]}))
    assert_output_shape("rekognition", "DetectLabels", both)
    assert len(both["Labels"]) == 3 and len(both["ImageProperties"]["DominantColors"]) == 2
    assert "ImageProperties" not in labels_answer(result, DetectLabels())


@pytest.mark.parametrize("code, aws_type, status", [
    ("UNSUPPORTED_FORMAT", "InvalidImageFormatException", 400), ("CORRUPT_IMAGE", "InvalidImageFormatException", 400),
    ("IMAGE_TOO_LARGE", "ImageTooLargeException", 400), ("FEATURE_UNAVAILABLE", "UnsupportedOperationException", 400),
    ("PIPELINE_FAILED", "InternalServerError", 500), (None, "InternalServerError", 500)])
def test_a_failed_result_becomes_the_exception_rekognition_raises_for_it(code, aws_type, status):
    error = failed_as_aws_error({"code": code, "message": "why"} if code else None)
    assert (error.aws_type, error.status) == (aws_type, status) and error.message
