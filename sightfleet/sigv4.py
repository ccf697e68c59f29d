"""Checking AWS Signature Version 4 on requests that the AWS SDKs and CLI sign, with botocore's own signer.

A caller signs with an access-key pair that Sightfleet issued (sightfleet/accounts.py). The server
reads the key id from the `Credential` scope, looks up the secret, recomputes the signature over the
same canonical request with botocore's `SigV4Auth` (so both sides share one implementation of the
canonical form), and compares in constant time. Checked besides the signature:
- the date: `X-Amz-Date` within `MAX_SKEW_S` of the server's clock (AWS allows 15 minutes), and the
  scope's date the same day, so a captured request cannot be replayed later;
- the payload: always hashed into the canonical request (`UNSIGNED-PAYLOAD` is refused), and an
  `X-Amz-Content-SHA256` header, when sent, must be the body's hash;
- the scope's service: the one this endpoint answers, so a signature made for another service fails.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
                      r"SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SCOPE_RE = re.compile(r"^(?P<key_id>[A-Za-z0-9]{16,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]{1,40})/"
                       r"(?P<service>[a-z0-9-]{1,40})/aws4_request$")


class SignatureError(Exception):
    """A request whose signature cannot be accepted; `code` is the AWS error code a client expects."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers: method, the path as the client sent it, raw query, headers and body."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def is_sigv4(header: str | None) -> bool:
    """Whether an Authorization header claims to be SigV4 (then it is checked here, not as a bearer key)."""
    return header is not None and header.lstrip().startswith(ALGORITHM)


def parse_authorization(header: str) -> Authorization:
    """The header's parts; SignatureError (IncompleteSignatureException) when malformed."""
    match = _AUTH_RE.match(header.strip())
    scope = _SCOPE_RE.match(match["credential"]) if match else None
    if match is None or scope is None:
        raise SignatureError("IncompleteSignatureException", "the Authorization header is not a valid "
                             "AWS4-HMAC-SHA256 Credential=.../SignedHeaders=.../Signature=... header")
    signed = tuple(match["headers"].split(";"))
    if "host" not in signed or signed != tuple(sorted(set(signed))):
        raise SignatureError("IncompleteSignatureException", "SignedHeaders must be sorted and include host")
    return Authorization(scope["key_id"], scope["date"], scope["region"], scope["service"], signed,
                         match["signature"])


def check_date(amz_date: str | None, scope_date: str, now: datetime) -> str:
    """X-Amz-Date when it is well formed, on the scope's day and within MAX_SKEW_S of now; else SignatureError."""
    if amz_date is None:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing")
    try:
        when = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing or not like "
                             "20260101T120000Z") from None
    if amz_date[:8] != scope_date:
        raise SignatureError("InvalidSignatureException", "the credential scope's date is not X-Amz-Date's day")
    skew = abs((now - when).total_seconds())
    if skew > MAX_SKEW_S:
        raise SignatureError("InvalidSignatureException", f"Signature expired: {amz_date} is more than "
                             f"{MAX_SKEW_S // 60} minutes from the server's time {now.strftime(AMZ_DATE_FORMAT)}")
    return amz_date


class _ExactSigner(SigV4Auth):
    """botocore's SigV4 signer, over exactly the headers the client signed.

    botocore's own headers_to_sign leaves out a few (User-Agent, Expect, ...) that it never signs itself;
    other SDKs sign some of them, and their signatures must verify too.
    """

    def headers_to_sign(self, request):
        return HTTPHeaders.from_pairs([(name.lower(), value) for name, value in request.headers.items()])


def _payload_hash(request: SignedRequest) -> str:
    """The body's SHA-256; a sent X-Amz-Content-SHA256 must match it (no unsigned payloads)."""
    actual = hashlib.sha256(request.body).hexdigest()
    claimed = _header(request.headers, "x-amz-content-sha256")
    if claimed is not None and not _HEX64.fullmatch(claimed):
        raise SignatureError("InvalidSignatureException", "X-Amz-Content-SHA256 is not a SHA-256 in hex "
                             "(unsigned payloads are not accepted)")
    if claimed is not None and not hmac.compare_digest(claimed.lower(), actual):
        raise SignatureError("InvalidSignatureException", "X-Amz-Content-SHA256 is not the hash of the body "
                             "(unsigned payloads are not accepted)")
    return actual


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def expected_signature(request: SignedRequest, auth: Authorization, secret: str, amz_date: str) -> str:
    """The signature a client holding `secret` computes for this request (botocore's SigV4 signer)."""
    missing = [name for name in auth.signed_headers if _header(request.headers, name) is None]
    if missing:
        raise SignatureError("IncompleteSignatureException", f"signed headers missing from the request: "
                             f"{', '.join(missing)}")
    _payload_hash(request)
    headers = {name: _header(request.headers, name) for name in auth.signed_headers}
    # The scheme only decides whether botocore hashes the payload (a signed X-Amz-Content-SHA256, checked
    # above, stands for it); http makes it always hash.
    url = f"http://{headers['host']}{request.path}" + (f"?{request.query}" if request.query else "")
    aws_request = AWSRequest(method=request.method, url=url, data=request.body, headers=headers)
    aws_request.context["timestamp"] = amz_date
    signer = _ExactSigner(Credentials(auth.key_id, secret), auth.service, auth.region)
    canonical = signer.canonical_request(aws_request)
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)


def verify(request: SignedRequest, service: str, secret_of: Callable[[str], str | None],
           now: datetime | None = None) -> Authorization:
    """The request's authorization when its signature is good; SignatureError with the AWS code otherwise.

    `secret_of(key_id)` gives the secret of a live key, or None for an unknown or revoked one.
    """
    header = _header(request.headers, "authorization") or ""
    auth = parse_authorization(header)
    if auth.service != service:
        raise SignatureError("InvalidSignatureException", f"the credential scope names service {auth.service!r}; "
                             f"this endpoint is {service!r}")
    amz_date = check_date(_header(request.headers, "x-amz-date"), auth.date, now or datetime.now(timezone.utc))
    secret = secret_of(auth.key_id)
    if secret is None:
        raise SignatureError("UnrecognizedClientException", "The security token included in the request is "
                             "invalid: unknown or revoked access key")
    if not hmac.compare_digest(expected_signature(request, auth, secret, amz_date), auth.signature):
        raise SignatureError("InvalidSignatureException", "The request signature we calculated does not match "
                             "the signature you provided. Check your AWS Secret Access Key and signing method.")
    return auth
