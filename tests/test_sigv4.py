"""SigV4 checking (sightfleet/sigv4.py) against requests signed by botocore's own client-side signer."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sightfleet.sigv4 import SignatureError, SignedRequest, is_sigv4, verify

KEY_ID, SECRET = "SFAKEXAMPLE000000001", "s" * 40
BODY = b'{"Image": {"Bytes": "aGVsbG8="}}'


def signed(body: bytes = BODY, secret: str = SECRET, service: str = "rekognition", url="http://127.0.0.1:8000/",
           extra_headers: dict | None = None) -> tuple[SignedRequest, datetime]:
    """A request as botocore signs it for a client, and the moment it was signed."""
    headers = {"Content-Type": "application/x-amz-json-1.1",
               "X-Amz-Target": "RekognitionService.DetectLabels", **(extra_headers or {})}
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(KEY_ID, secret), service, "us-east-1").add_auth(request)
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    sent = dict(request.headers.items())
    sent["Host"] = url.split("/")[2]
    path, _, query = url.split("/", 3)[3].partition("?")
    return SignedRequest("POST", "/" + path, query, sent, body), when


def secrets(key_id: str) -> str | None:
    return SECRET if key_id == KEY_ID else None


def test_a_request_signed_by_botocore_verifies():
    request, when = signed()
    auth = verify(request, "rekognition", secrets, now=when)
    assert auth.key_id == KEY_ID and auth.region == "us-east-1" and "x-amz-target" in auth.signed_headers


def test_a_query_string_is_part_of_what_is_signed():
    request, when = signed(url="http://127.0.0.1:8000/?a=1&b=two%20words")
    assert verify(request, "rekognition", secrets, now=when)


def refusal(request: SignedRequest, when: datetime, service="rekognition", secret_of=secrets) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(request, service, secret_of, now=when)
    return caught.value.code


@pytest.mark.parametrize("change, code", [
    (lambda r: SignedRequest(r.method, r.path, r.query, r.headers, BODY + b" "), "InvalidSignatureException"),
    (lambda r: SignedRequest(r.method, r.path, r.query, {**r.headers, "X-Amz-Target": "RekognitionService.X"},
                             r.body), "InvalidSignatureException"),
    (lambda r: SignedRequest(r.method, r.path, r.query, {**r.headers, "Host": "evil.test"}, r.body),
     "InvalidSignatureException"),
    (lambda r: SignedRequest(r.method, "/other", r.query, r.headers, r.body), "InvalidSignatureException"),
    (lambda r: SignedRequest(r.method, r.path, r.query, {**r.headers, "Authorization": "AWS4-HMAC-SHA256 junk"},
                             r.body), "IncompleteSignatureException"),
    (lambda r: SignedRequest(r.method, r.path, r.query,
                             {k: v for k, v in r.headers.items() if k != "X-Amz-Date"}, r.body),
     "IncompleteSignatureException"),
    (lambda r: SignedRequest(r.method, r.path, r.query, {**r.headers, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
                             r.body), "InvalidSignatureException"),
], ids=["body", "signed-header", "host", "path", "malformed", "no-date", "unsigned-payload"])
def test_any_change_to_what_was_signed_is_refused(change, code):
    request, when = signed()
    assert refusal(change(request), when) == code


def test_a_wrong_secret_an_unknown_key_and_another_service_are_refused():
    request, when = signed(secret="t" * 40)
    assert refusal(request, when) == "InvalidSignatureException"
    request, when = signed()
    assert refusal(request, when, secret_of=lambda key_id: None) == "UnrecognizedClientException"
    request, when = signed(service="s3")
    assert refusal(request, when) == "InvalidSignatureException"


@pytest.mark.parametrize("offset_s, accepted", [(0, True), (14 * 60, True), (-14 * 60, True),
                                                (16 * 60, False), (-16 * 60, False), (86400, False)])
def test_a_request_is_accepted_only_within_fifteen_minutes_of_its_signing(offset_s, accepted):
    request, when = signed()
    now = when + timedelta(seconds=offset_s)
    if accepted:
        assert verify(request, "rekognition", secrets, now=now)
    else:
        assert refusal(request, now) == "InvalidSignatureException"


def test_only_sigv4_headers_are_taken_for_sigv4():
    assert is_sigv4("AWS4-HMAC-SHA256 Credential=x") and not is_sigv4("Bearer sfk_x") and not is_sigv4(None)


def test_headers_botocore_would_not_sign_verify_when_another_sdk_signs_them():
    """Some SDKs sign User-Agent (which botocore never does); such a signature must verify too."""
    from botocore.awsrequest import HTTPHeaders

    class SignsEverything(SigV4Auth):
        def headers_to_sign(self, request):
            return HTTPHeaders.from_pairs([(k.lower(), v) for k, v in request.headers.items()] +
                                          [("host", "127.0.0.1:8000")])

    request = AWSRequest(method="POST", url="http://127.0.0.1:8000/", data=BODY,
                         headers={"User-Agent": "aws-sdk-java/1.12", "X-Amz-Target": "RekognitionService.DetectLabels"})
    SignsEverything(Credentials(KEY_ID, SECRET), "rekognition", "us-east-1").add_auth(request)
    assert "user-agent" in request.headers["Authorization"]
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    sent = {**dict(request.headers.items()), "Host": "127.0.0.1:8000"}
    assert verify(SignedRequest("POST", "/", "", sent, BODY), "rekognition", secrets, now=when)


def test_a_payload_hash_that_is_not_hex_is_refused_not_a_crash():
    request, when = signed()
    bad = SignedRequest(request.method, request.path, request.query,
                        {**request.headers, "X-Amz-Content-SHA256": "é" * 64}, request.body)
    assert refusal(bad, when) == "InvalidSignatureException"
