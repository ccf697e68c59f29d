"""The guard in front of the local AWS endpoint: its decisions as a table, then the real endpoint through boto3 and HTTP."""
from __future__ import annotations

import io
import json
import time
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.endpoint_guard import READY_PATH, allowed_hosts, refusal
from sightfleet.local_access import CONTROL_HEADER, LocalAccess
from tests.support import TEST_ACCESS, environ_for, sigv4_headers, start_moto
from tests.test_endpoint_browser import FORGED_PRESIGN

PORT = 4566
BASE = f"http://127.0.0.1:{PORT}"
HOSTS = allowed_hosts("127.0.0.1", PORT)
NOW = time.time()
OTHER = LocalAccess.generate()
SQS_JSON = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ListQueues"}


def signed(method: str = "POST", path: str = "/", body: bytes = b"{}", access: LocalAccess = TEST_ACCESS,
           extra: dict | None = None, host: str | None = None) -> dict:
    """A request signed as boto3 signs an SQS call (its body hashed into the signature)."""
    url = (f"http://{host}" if host else BASE) + path
    headers = sigv4_headers(url, method, body, "sqs", dict(SQS_JSON), access)
    return environ_for(method, url, {**headers, **(extra or {})}, body)


def presigned(key: str = "owner/a b+c.jpg", expires_s: int = 900, access: LocalAccess = TEST_ACCESS) -> str:
    """A presigned GET, made by boto3 exactly as the web tier makes its thumbnail links (no network)."""
    s3 = boto3.client("s3", endpoint_url=BASE, region_name="us-east-1", aws_access_key_id=access.access_key_id,
                      aws_secret_access_key=access.secret_access_key, config=Config(signature_version="s3v4"))
    return s3.generate_presigned_url("get_object", Params={"Bucket": "b-output", "Key": key}, ExpiresIn=expires_s)


def with_body(environ: dict, body: bytes) -> dict:
    return {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}


def without_signature_param(url: str) -> str:
    return url.replace("X-Amz-Signature=", "X-Amz-Signature=0")


CASES = {
    # what: (environ, seconds after signing it is checked, the refusal's code or None)
    "signed with this run's pair": (signed(), 0, None),
    "signed, by the name localhost": (signed(host=f"localhost:{PORT}"), 0, None),
    "signed, five minutes late": (signed(), 300, None),
    "signed, a curl by hand (Sec-Fetch-Site none)": (signed(extra={"Sec-Fetch-Site": "none"}), 0, None),
    "unsigned": (environ_for("GET", BASE + "/b-output/owner/x.jpg", {}), 0, "MissingAuthenticationToken"),
    "another pair": (signed(access=OTHER), 0, "InvalidAccessKeyId"),
    "this key id, another secret": (signed(access=LocalAccess(TEST_ACCESS.access_key_id, OTHER.secret_access_key,
                                                             "x")), 0, "SignatureDoesNotMatch"),
    "a body changed after signing": (with_body(signed(), b'{"QueueNamePrefix": "x"}'), 0, "SignatureDoesNotMatch"),
    "signed an hour ago": (signed(), 3600, "RequestTimeTooSkewed"),
    "a body too large to hash, refused before it is read": ({**signed(), "CONTENT_LENGTH": str(64 << 20)}, 0,
                                                           "RequestEntityTooLarge"),
    "a forged Host (DNS rebinding)": (signed(host=f"attacker.example:{PORT}"), 0, "InvalidHost"),
    "another port's Host": (signed(host=f"127.0.0.1:{PORT + 1}"), 0, "InvalidHost"),
    "no Host": ({k: v for k, v in signed().items() if k != "HTTP_HOST"}, 0, "InvalidHost"),
    "made for a page of another site": (signed(extra={"Sec-Fetch-Site": "cross-site"}), 0, "AccessDenied"),
    "made for a page on another loopback port": (signed(extra={"Sec-Fetch-Site": "same-site"}), 0, "AccessDenied"),
    "the readiness probe": (environ_for("GET", BASE + READY_PATH, {}), 0, None),
    "moto's data dump": (environ_for("GET", BASE + "/moto-api/data.json", {}), 0, "AccessDenied"),
    "moto's reset": (environ_for("POST", BASE + "/moto-api/reset", {}), 0, "AccessDenied"),
    "moto's reset, signed but no token": (signed(path="/moto-api/reset"), 0, "AccessDenied"),
    "moto's API without its slash": (environ_for("GET", BASE + "/moto-api", {}), 0, "AccessDenied"),
    "moto's reset, a wrong token": (environ_for("POST", BASE + "/moto-api/reset", {CONTROL_HEADER: "guess"}), 0,
                                    "AccessDenied"),
    "moto's data dump with the token": (environ_for("GET", BASE + "/moto-api/data.json",
                                                    TEST_ACCESS.control_headers()), 0, None),
    "the state's save": (environ_for("POST", BASE + "/_sightfleet/state/save", {}), 0, "AccessDenied"),
    "the state's save with the token": (environ_for("POST", BASE + "/_sightfleet/state/save",
                                                    TEST_ACCESS.control_headers()), 0, None),
    "the token, from another page": (environ_for("POST", BASE + "/moto-api/reset",
                                                 {**TEST_ACCESS.control_headers(), "Sec-Fetch-Site": "cross-site"}),
                                     0, "AccessDenied"),
    "a presigned thumbnail": (environ_for("GET", presigned(), {}), 0, None),
    "a presigned thumbnail in the web tier's page": (environ_for("GET", presigned(), {"Sec-Fetch-Site": "same-site"}),
                                                     0, None),
    "a presigned thumbnail after its expiry": (environ_for("GET", presigned(expires_s=60), {}), 61, "AccessDenied"),
    "a presigned URL with another key put in": (environ_for("GET", presigned().replace("a%20b", "other"), {}), 0,
                                               "SignatureDoesNotMatch"),
    "a presigned URL with its signature changed": (environ_for("GET", without_signature_param(presigned()), {}), 0,
                                                   "SignatureDoesNotMatch"),
    "a presigned URL by another pair": (environ_for("GET", presigned(access=OTHER), {}), 0, "InvalidAccessKeyId"),
    "a presigned URL for eight days": (environ_for("GET", presigned(expires_s=8 * 86400), {}), 0,
                                       "AuthorizationQueryParametersError"),
    "a presigned URL of Signature Version 2": (environ_for("GET", BASE + "/b-output/k?AWSAccessKeyId="
                                                           f"{TEST_ACCESS.access_key_id}&Signature=x&Expires=9", {}),
                                               0, "MissingAuthenticationToken"),
}


@pytest.mark.parametrize("what", CASES)
def test_the_guard_decides(what):
    environ, later_s, code = CASES[what]
    environ = {**environ, "wsgi.input": io.BytesIO(environ["wsgi.input"].getvalue())}   # each run reads its own
    found = refusal(environ, HOSTS, TEST_ACCESS, time.time() + later_s)
    assert (found.code if found else None) == code, found


def test_a_body_the_guard_read_is_still_there_for_moto():
    body = json.dumps({"QueueNamePrefix": "x"}).encode()
    environ = signed(body=body)
    assert refusal(environ, HOSTS, TEST_ACCESS, time.time()) is None
    assert environ["wsgi.input"].read() == body


# Through the real endpoint (tests/support.py's start_moto: the guard, with the run's test pair).

def _client(moto_server: str, service: str, access: LocalAccess):
    return boto3.client(service, endpoint_url=moto_server, region_name="us-east-1",
                        aws_access_key_id=access.access_key_id, aws_secret_access_key=access.secret_access_key,
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture
def stored(resources) -> tuple[str, str]:
    """An object in the output bucket; returns its bucket and key."""
    resources.outputs.put("owner-1/secret.jpg", b"the owner's photo", "image/jpeg")
    return resources.settings.names.output_bucket, "owner-1/secret.jpg"


def test_an_unsigned_get_of_an_object_is_refused(moto_server, stored):
    bucket, key = stored
    reply = requests.get(f"{moto_server}/{bucket}/{key}", timeout=10)
    assert reply.status_code == 403 and b"the owner's photo" not in reply.content
    assert "<Code>MissingAuthenticationToken</Code>" in reply.text
    assert "Access-Control-Allow-Origin" not in reply.headers


def test_a_forged_signature_reads_nothing(moto_server, stored):
    """Any key id and any signature, in the query as a presigned URL has them or in the header: moto checks neither."""
    bucket, key = stored
    forged_header = {"Authorization": "AWS4-HMAC-SHA256 Credential=anyone/20261206/us-east-1/s3/aws4_request, "
                                      "SignedHeaders=host, Signature=0", "X-Amz-Date": "20261206T000000Z"}
    for url, headers in ((f"{moto_server}/{bucket}/{key}{FORGED_PRESIGN}", {}),
                         (f"{moto_server}/{bucket}/{key}", forged_header)):
        reply = requests.get(url, headers=headers, timeout=10)
        assert reply.status_code == 403 and b"the owner's photo" not in reply.content, reply.text


@pytest.mark.parametrize("access, code", [
    (OTHER, "InvalidAccessKeyId"),
    (LocalAccess(TEST_ACCESS.access_key_id, OTHER.secret_access_key, "x"), "SignatureDoesNotMatch"),
])
def test_a_wrong_key_is_refused_by_every_service(moto_server, stored, access, code):
    bucket, key = stored
    calls = {"s3": lambda c: c.get_object(Bucket=bucket, Key=key), "sqs": lambda c: c.list_queues(),
             "dynamodb": lambda c: c.list_tables(), "ec2": lambda c: c.describe_instances()}
    for service, call in calls.items():
        with pytest.raises(ClientError) as refused:
            call(_client(moto_server, service, access))
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, service
        assert code in str(refused.value), (service, refused.value)


def test_the_right_pair_is_served(moto_server, stored):
    bucket, key = stored
    assert _client(moto_server, "s3", TEST_ACCESS).get_object(Bucket=bucket, Key=key)["Body"].read() \
        == b"the owner's photo"


def test_a_forged_host_is_refused(moto_server, stored):
    bucket, key = stored
    port = urlsplit(moto_server).port
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}"):
        reply = requests.get(f"{moto_server}/{bucket}/{key}", headers={"Host": host}, timeout=10)
        assert reply.status_code == 403 and "<Code>InvalidHost</Code>" in reply.text, host


def test_presigned_links_still_work_from_the_pages_and_expire(moto_server, stored, resources):
    bucket, key = stored
    url = resources.outputs.presigned_url(key, 60)
    assert requests.get(url, headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Dest": "image"},
                        timeout=10).content == b"the owner's photo"
    assert requests.get(url.replace("secret", "other"), timeout=10).status_code == 403
    short = resources.outputs.presigned_url(key, 1)
    time.sleep(2.1)
    assert requests.get(short, timeout=10).status_code == 403


@pytest.mark.parametrize("method, path", [("GET", "/moto-api/data.json"), ("POST", "/moto-api/reset"),
                                          ("GET", "/moto-api/"), ("POST", "/_sightfleet/state/save")])
def test_control_routes_need_the_token(moto_server, stored, resources, method, path):
    reply = requests.request(method, moto_server + path, timeout=10)
    assert reply.status_code == 403 and reply.json()["__type"] == "AccessDenied"
    assert b"the owner's photo" not in reply.content
    assert resources.outputs.get(stored[1]) == b"the owner's photo"   # a refused reset reset nothing


def test_the_token_opens_the_data_dump():
    # An endpoint of its own: moto's dump fails on the session endpoint's CloudFormation stacks (tests of
    # scripts/deploy leave them there; the local stack never has one).
    proc, url = start_moto()
    try:
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="dumped-bucket")
        reply = requests.get(url + "/moto-api/data.json", headers=TEST_ACCESS.control_headers(), timeout=10)
        assert reply.status_code == 200 and "dumped-bucket" in reply.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_no_origin_is_allowed_to_read_across(moto_server, stored, resources):
    """moto's global CORS is off: no preflight passes, no answer names an origin that may read it."""
    bucket, key = stored
    preflight = requests.options(f"{moto_server}/{bucket}/{key}", timeout=10, headers={
        "Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    answer = requests.get(resources.outputs.presigned_url(key, 60), headers={"Origin": "http://127.0.0.1:9"},
                          timeout=10)
    assert answer.status_code == 200 and "Access-Control-Allow-Origin" not in answer.headers
