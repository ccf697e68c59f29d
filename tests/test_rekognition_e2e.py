"""Rekognition's protocol on the live stack, driven by the real clients: boto3's rekognition client and the AWS CLI."""
from __future__ import annotations

import io
import json
import os
import subprocess
import uuid

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import ImageDraw, ImageFont

from tests.aws_shapes import assert_output_shape
from testkit.photos import photo
from tests.support import AWS_TEST_ENV, REPO, TESTDATA, jpeg_bytes, wait_for

pytestmark = pytest.mark.e2e
CAT = jpeg_bytes("chelsea")
COFFEE = jpeg_bytes("coffee")   # a cup and espresso: more than one label
ASTRONAUT = jpeg_bytes("astronaut")   # one face, looking at the camera


def sign_photo() -> bytes:
    """The coffee photo with a printed sign across its top quarter: FRESH COFFEE."""
    image = photo("coffee")
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 20, 560, 110), fill="white")
    draw.text((60, 30), "FRESH COFFEE", fill="black", font=ImageFont.load_default(size=56))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


SIGN = sign_photo()


def accounts_cli(stack, *args: str) -> list[str]:
    """`python -m web_tier.accounts ...` beside the stack, as a user runs it; its stdout lines."""
    env = {**stack.env, **AWS_TEST_ENV, "AWS_ENDPOINT_URL": stack.aws_url}
    done = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "web_tier.accounts", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def access_key(stack, name: str) -> dict[str, str]:
    """A new account's access-key pair, from the CLI's last two lines."""
    accounts_cli(stack, "create", name)
    lines = accounts_cli(stack, "access-key", name, "--label", "tests")
    return dict(line.split("=", 1) for line in lines[-2:])


def rekognition(stack, pair: dict[str, str], **config):
    return boto3.client("rekognition", endpoint_url=stack.web_url, region_name="us-east-1",
                        aws_access_key_id=pair["AWS_ACCESS_KEY_ID"], aws_secret_access_key=pair["AWS_SECRET_ACCESS_KEY"],
                        config=Config(retries={"max_attempts": 1}, **config))


@pytest.fixture(scope="module")
def caller(local_stack):
    name = f"sdk-{uuid.uuid4().hex[:6]}"
    pair = access_key(local_stack, name)
    return name, pair, rekognition(local_stack, pair)


def test_detect_labels_answers_a_real_photo_in_rekognitions_exact_shape(local_stack, caller):
    _, _, client = caller
    answer = client.detect_labels(Image={"Bytes": CAT})
    assert_output_shape("rekognition", "DetectLabels", answer)
    names = [label["Name"].lower() for label in answer["Labels"]]
    assert any("cat" in name for name in names), names
    assert answer["LabelModelVersion"] and answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert all(label["Confidence"] >= 55 for label in answer["Labels"])


def test_each_filter_narrows_the_answer(caller):
    _, _, client = caller
    everything = client.detect_labels(Image={"Bytes": COFFEE}, MinConfidence=0)["Labels"]
    top = everything[0]["Name"]
    assert len(everything) >= 2
    assert [lb["Name"] for lb in client.detect_labels(Image={"Bytes": COFFEE}, MaxLabels=1,
                                                     MinConfidence=0)["Labels"]] == [top]
    strict = client.detect_labels(Image={"Bytes": COFFEE}, MinConfidence=everything[0]["Confidence"] - 0.01)["Labels"]
    assert all(label["Confidence"] >= everything[0]["Confidence"] - 0.01 for label in strict) and strict
    only = client.detect_labels(Image={"Bytes": COFFEE}, MinConfidence=0,
                                Settings={"GeneralLabels": {"LabelInclusionFilters": [top]}})["Labels"]
    assert [label["Name"] for label in only] == [top]
    without = client.detect_labels(Image={"Bytes": COFFEE}, MinConfidence=0,
                                   Settings={"GeneralLabels": {"LabelExclusionFilters": [top]}})["Labels"]
    assert top not in [label["Name"] for label in without] and len(without) == len(everything) - 1


@pytest.mark.parametrize("image, error", [
    ({"Bytes": b"GIF89a not a photo we take"}, "InvalidImageFormatException"),
    ({"Bytes": b"\xff\xd8\xff\xe0" + b"\x00" * 64}, "InvalidImageFormatException"),
    ({"Bytes": b"\xff\xd8\xff" + b"\x00" * (5 * 2**20 + 10)}, "ImageTooLargeException"),
], ids=["gif", "corrupt", "too-large"])
def test_bad_images_raise_rekognitions_exception_classes(caller, image, error):
    _, _, client = caller
    with pytest.raises(getattr(client.exceptions, error)):
        client.detect_labels(Image=image)


def test_parameters_the_model_refuses_raise_invalid_parameter(local_stack, caller):
    _, pair, _ = caller
    unchecked = rekognition(local_stack, pair, parameter_validation=False)
    with pytest.raises(unchecked.exceptions.InvalidParameterException):
        unchecked.detect_labels(Image={"Bytes": CAT}, MinConfidence=250)
    with pytest.raises(unchecked.exceptions.InvalidParameterException):
        unchecked.detect_labels(Image={"Bytes": CAT}, Features=["FACES"])
    with pytest.raises(unchecked.exceptions.InvalidParameterException):
        unchecked.detect_text(Image={"Bytes": SIGN}, Filters={"WordFilter": {"MinConfidence": 150}})
    with pytest.raises(unchecked.exceptions.InvalidParameterException):
        unchecked.detect_faces(Image={"Bytes": ASTRONAUT}, Attributes=["IDENTITY"])
    with pytest.raises(unchecked.exceptions.InvalidParameterException):
        unchecked.detect_moderation_labels(Image={"Bytes": CAT}, MinConfidence=-5)


def test_an_operation_not_answered_here_is_a_clear_error_not_a_made_up_result(caller):
    _, _, client = caller
    with pytest.raises(ClientError) as caught:
        client.compare_faces(SourceImage={"Bytes": ASTRONAUT}, TargetImage={"Bytes": ASTRONAUT})
    assert caught.value.response["Error"]["Code"] == "UnsupportedOperationException"
    assert "DetectLabels" in caught.value.response["Error"]["Message"]


def test_a_wrong_secret_and_a_revoked_key_are_refused(local_stack, caller):
    name, pair, _ = caller
    wrong = rekognition(local_stack, {**pair, "AWS_SECRET_ACCESS_KEY": "x" * 40})
    with pytest.raises(ClientError) as caught:
        wrong.detect_labels(Image={"Bytes": CAT})
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    spare = access_key(local_stack, f"{name}-spare")
    client = rekognition(local_stack, spare)
    accounts_cli(local_stack, "revoke", spare["AWS_ACCESS_KEY_ID"])
    with pytest.raises(ClientError) as caught:
        client.detect_labels(Image={"Bytes": CAT})
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_s3_objects_are_read_only_from_the_callers_own_originals(local_stack, caller):
    name, _, client = caller
    account = local_stack.accounts().get(name)
    key = local_stack.accounts().issue_key(account).key
    own = requests.post(f"{local_stack.web_url}/api/images?wait=30", files={"file": ("mine.jpg", CAT, "image/jpeg")},
                        headers={"Authorization": f"Bearer {key}"}).json()["images"][0]
    admin = local_stack.post("/api/images?wait=30", files={"file": ("admin.jpg", CAT, "image/jpeg")}).json()["images"][0]
    bucket = f"{local_stack.prefix}-input"
    answer = client.detect_labels(Image={"S3Object": {"Bucket": bucket, "Name": f"originals/{account['account_id']}/"
                                                                                f"{own['id']}.jpg"}})
    assert any("cat" in label["Name"].lower() for label in answer["Labels"])
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.detect_labels(Image={"S3Object": {"Bucket": bucket, "Name": f"originals/{admin['owner']}/{admin['id']}.jpg"}})
    with pytest.raises(client.exceptions.AccessDeniedException):
        client.detect_labels(Image={"S3Object": {"Bucket": "someone-elses-bucket", "Name": "x.jpg"}})
    with pytest.raises(client.exceptions.InvalidS3ObjectException):
        client.detect_labels(Image={"S3Object": {"Bucket": bucket, "Name": f"originals/{account['account_id']}/none.jpg"}})


def test_the_photo_of_a_call_is_not_kept_unless_the_account_asks(local_stack, caller):
    name, pair, client = caller
    key = local_stack.accounts().issue_key(local_stack.accounts().get(name)).key
    listing = lambda: local_stack.get("/api/images?album=rekognition-api",  # noqa: E731
                                      headers={"Authorization": f"Bearer {key}"}).json()["images"]
    client.detect_labels(Image={"Bytes": CAT})
    assert listing() == []
    accounts_cli(local_stack, "keep-api-images", name, "on")
    client.detect_labels(Image={"Bytes": jpeg_bytes("chelsea", scale=0.8)})
    kept = wait_for(listing, 10, what="the kept photo in the gallery")
    assert kept[0]["status"] == "SUCCEEDED"
    accounts_cli(local_stack, "keep-api-images", name, "off")


def cli_env(pair: dict[str, str]) -> dict[str, str]:
    """The AWS CLI's environment: the access key and nothing of this machine's own AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": pair["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": pair["AWS_SECRET_ACCESS_KEY"],
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
    return env


def aws_cli(stack, pair: dict[str, str], *args: str) -> dict:
    """`aws rekognition ...` against the web tier, as a user runs it; its JSON answer."""
    done = subprocess.run([str(REPO / ".venv/bin/aws"), "rekognition", *args, "--endpoint-url", stack.web_url],
                          env=cli_env(pair), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_aws_cli_detects_labels_unmodified(local_stack, caller, tmp_path):
    _, pair, _ = caller
    photo_file = tmp_path / "cat.jpg"
    photo_file.write_bytes(CAT)
    answer = aws_cli(local_stack, pair, "detect-labels", "--image-bytes", f"fileb://{photo_file}", "--max-labels", "3")
    assert_output_shape("rekognition", "DetectLabels", answer)
    assert 1 <= len(answer["Labels"]) <= 3
    refused = subprocess.run([str(REPO / ".venv/bin/aws"), "rekognition", "detect-labels", "--endpoint-url",
                              local_stack.web_url, "--image-bytes", f"fileb://{photo_file}", "--min-confidence", "101"],
                             env=cli_env(pair), capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "MinConfidence" in refused.stderr


def test_exif_photo_is_answered_too(caller):
    photos = sorted((TESTDATA / "exif-samples").rglob("*.jpg"))
    assert photos, "the shared test photos are missing"
    _, _, client = caller
    answer = client.detect_labels(Image={"Bytes": photos[0].read_bytes()[:5 * 2**20]}, MinConfidence=0)
    assert_output_shape("rekognition", "DetectLabels", answer)


def test_detect_text_reads_a_sign_in_rekognitions_exact_shape(caller):
    _, _, client = caller
    answer = client.detect_text(Image={"Bytes": SIGN})
    assert_output_shape("rekognition", "DetectText", answer)
    found = answer["TextDetections"]
    words = [d for d in found if d["Type"] == "WORD"]
    lines = {d["Id"] for d in found if d["Type"] == "LINE"}
    assert {"FRESH", "COFFEE"} <= {w["DetectedText"].upper() for w in words}, found
    assert all(w["ParentId"] in lines for w in words) and answer["TextModelVersion"]
    assert all(w["Geometry"]["BoundingBox"]["Top"] < 0.3 for w in words)   # the sign is at the top
    top_half = {"BoundingBox": {"Width": 1.0, "Height": 0.5, "Left": 0.0, "Top": 0.0}}
    bottom_half = {"BoundingBox": {"Width": 1.0, "Height": 0.5, "Left": 0.0, "Top": 0.5}}
    kept = client.detect_text(Image={"Bytes": SIGN}, Filters={"RegionsOfInterest": [top_half]})["TextDetections"]
    assert {d["DetectedText"] for d in kept} == {d["DetectedText"] for d in found}
    assert client.detect_text(Image={"Bytes": SIGN}, Filters={"RegionsOfInterest": [bottom_half]})[
        "TextDetections"] == []
    assert client.detect_text(Image={"Bytes": SIGN}, Filters={"WordFilter": {"MinBoundingBoxHeight": 0.9}})[
        "TextDetections"] == []


def test_detect_faces_finds_the_astronauts_face_and_none_in_a_coffee_cup(caller):
    _, _, client = caller
    answer = client.detect_faces(Image={"Bytes": ASTRONAUT}, Attributes=["ALL"])
    assert_output_shape("rekognition", "DetectFaces", answer)
    [face] = answer["FaceDetails"]
    box = face["BoundingBox"]
    assert face["Confidence"] > 50 and 0.3 < box["Left"] + box["Width"] / 2 < 0.7 and box["Top"] < 0.5
    assert face["Landmarks"] and "OrientationCorrection" not in answer
    assert client.detect_faces(Image={"Bytes": COFFEE})["FaceDetails"] == []


def test_detect_moderation_labels_answers_a_harmless_photo_and_ignores_a_human_loop(caller):
    _, _, client = caller
    loop = {"HumanLoopName": "review-1", "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:"
                                                             "flow-definition/review"}
    answer = client.detect_moderation_labels(Image={"Bytes": CAT}, HumanLoopConfig=loop)
    assert_output_shape("rekognition", "DetectModerationLabels", answer)
    assert answer["ModerationLabels"] == [] and answer["ModerationModelVersion"]
    assert "HumanLoopActivationOutput" not in answer
    everything = client.detect_moderation_labels(Image={"Bytes": CAT}, MinConfidence=0)
    assert_output_shape("rekognition", "DetectModerationLabels", everything)


def test_image_properties_come_alone_or_with_the_labels(caller):
    _, _, client = caller
    alone = client.detect_labels(Image={"Bytes": COFFEE}, Features=["IMAGE_PROPERTIES"],
                                 Settings={"ImageProperties": {"MaxDominantColors": 3}})
    assert_output_shape("rekognition", "DetectLabels", alone)
    properties = alone["ImageProperties"]
    assert alone["Labels"] == [] and 1 <= len(properties["DominantColors"]) <= 3
    assert set(properties["Quality"]) >= {"Brightness", "Sharpness"}
    both = client.detect_labels(Image={"Bytes": COFFEE}, Features=["GENERAL_LABELS", "IMAGE_PROPERTIES"])
    assert_output_shape("rekognition", "DetectLabels", both)
    assert both["Labels"] and both["ImageProperties"]["DominantColors"]


def test_a_detect_text_job_runs_no_label_model(local_stack):
    name = f"kept-{uuid.uuid4().hex[:6]}"
    client = rekognition(local_stack, access_key(local_stack, name))
    accounts_cli(local_stack, "keep-api-images", name, "on")
    client.detect_text(Image={"Bytes": SIGN})
    account = local_stack.accounts().get(name)
    key = local_stack.accounts().issue_key(account).key
    [kept] = local_stack.get("/api/images?album=rekognition-api", headers={"Authorization": f"Bearer {key}"}).json()[
        "images"]
    result = local_stack.get(f"/api/images/{kept['id']}").json()
    assert result["features"] == ["text", "moderation"] and result["labels"] == [], result
    assert result["text_detections"]


def test_the_aws_cli_detects_text_and_faces_unmodified(local_stack, caller, tmp_path):
    _, pair, _ = caller
    sign, face = tmp_path / "sign.jpg", tmp_path / "face.jpg"
    sign.write_bytes(SIGN)
    face.write_bytes(ASTRONAUT)
    text = aws_cli(local_stack, pair, "detect-text", "--image-bytes", f"fileb://{sign}", "--filters",
                   json.dumps({"WordFilter": {"MinConfidence": 50}}))
    assert_output_shape("rekognition", "DetectText", text)
    assert "COFFEE" in {d["DetectedText"].upper() for d in text["TextDetections"]}
    faces = aws_cli(local_stack, pair, "detect-faces", "--image-bytes", f"fileb://{face}", "--attributes", "ALL")
    assert_output_shape("rekognition", "DetectFaces", faces)
    assert len(faces["FaceDetails"]) == 1
    moderation = aws_cli(local_stack, pair, "detect-moderation-labels", "--image-bytes", f"fileb://{face}",
                         "--min-confidence", "60")
    assert_output_shape("rekognition", "DetectModerationLabels", moderation)
