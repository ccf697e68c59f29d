"""The guard in front of the local AWS endpoint: only this run's own processes and tools get through.

moto answers anyone who reaches its port, and a web page the user opens can reach 127.0.0.1. So, before
moto sees a request, `refusal()` checks, in order:

1. Host: only the endpoint's own loopback names with its port. A DNS-rebound page sends its own name.
2. `Sec-Fetch-Site: cross-site` or `same-site`: a browser sent it for another page (another loopback
   port is the same site). Refused unless it is a presigned S3 URL, which the page was given on purpose
   (the web tier's thumbnails) and whose signature is checked next like any other.
3. `/moto-api/` (moto's dashboard, data dump, reset) and `/_sightfleet/` (the state's save and restore):
   only with this run's control token in the `X-Sightfleet-Control` header; `GET /_sightfleet/ready`
   answers anyone who passed 1 and 2, so that whoever started the endpoint can wait for it.
4. Everything else: signed with AWS Signature Version 4 by this run's key pair, in the Authorization
   header or, for a presigned URL, in the query (X-Amz-Credential, X-Amz-Signature).

The signature is verified in full, not just its key id, with botocore's own SigV4 implementation (its
canonical request and string to sign; the day's derived key is remembered, as SigV4 allows): the
key id is no secret (every presigned thumbnail URL shows it, in the pages of every signed-in account,
in the browser's history), so a check of the key id alone would let anyone who saw one page forge any
call. A valid signature proves knowledge of the secret key, which never travels and lives only in the
stack's processes and `.run/local-aws.env` (0600). A presigned URL then grants its one request until it
expires (moto itself checks neither signature nor expiry). Cost: `benchmarks/emulator.py`.

Refusals are 403s shaped as the service's errors (XML, or JSON for the JSON protocols), so that boto3
reports their code and message.
"""
from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

from botocore.auth import UNSIGNED_PAYLOAD, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from sightfleet.local_access import CONTROL_HEADER, LocalAccess

READY_PATH = "/_sightfleet/ready"
CONTROL_PREFIXES = ("/moto-api", "/_sightfleet")
# What a browser says of a request made for a page of another origin's site or of another site.
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})
# AWS's own bounds: a signed request is good 15 minutes either side of its time; a presigned one until it expires.
MAX_SKEW_S = 15 * 60
MAX_PRESIGNED_S = 7 * 24 * 3600
# The largest body the guard reads to hash (JSON and query protocols: SQS batches, DynamoDB batch writes
# stay far below); refused before it is read. S3's clients send the hash in a header: their bodies are never read.
MAX_HASHED_BODY_BYTES = 32 * 1024 * 1024
_ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")
_CONTROL_ENVIRON = "HTTP_" + CONTROL_HEADER.upper().replace("-", "_")
_SIGNATURE_PARAM = "X-Amz-Signature="
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: an AWS-style error code and a message for the person who sent it."""

    code: str
    message: str


@dataclass(frozen=True)
class _Signed:
    """What a request says of its signature."""

    credential: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    expires_s: int | None  # presigned: seconds it is valid from amz_date


def allowed_hosts(bind_host: str, port: int) -> frozenset[str]:
    """The Host values the endpoint answers to: its loopback names, with its port."""
    return frozenset(f"{name}:{port}" for name in {bind_host, "127.0.0.1", "localhost"})


def refusal(environ: dict, hosts: frozenset[str], access: LocalAccess, now: float) -> Refusal | None:
    """Why this request must not reach moto, or None. May replace environ's body with a copy it has read."""
    if environ.get("HTTP_HOST", "") not in hosts:
        return Refusal("InvalidHost", "this endpoint answers only to its own loopback address and port")
    path = environ.get("PATH_INFO", "")
    presigned = "X-Amz-Credential=" in environ.get("QUERY_STRING", "")
    if environ.get("HTTP_SEC_FETCH_SITE") in _FOREIGN_SITES and not presigned:
        return Refusal("AccessDenied", "a web page may not use this endpoint")
    if path == READY_PATH:
        return None
    if path.startswith(CONTROL_PREFIXES):
        if access.is_control_token(environ.get(_CONTROL_ENVIRON, "")):
            return None
        return Refusal("AccessDenied", f"{path} needs this run's control token ({CONTROL_HEADER} header)")
    return signature_refusal(environ, access, now)


def signature_refusal(environ: dict, access: LocalAccess, now: float) -> Refusal | None:
    """Why the request's SigV4 signature does not prove this run's key pair, or None when it does."""
    signed = _signed_query(environ) if "X-Amz-Credential=" in environ.get("QUERY_STRING", "") \
        else _signed_header(environ.get("HTTP_AUTHORIZATION", ""), environ.get("HTTP_X_AMZ_DATE", ""))
    if signed is None:
        return Refusal("MissingAuthenticationToken",
                       "sign requests with Signature Version 4 and this run's key pair (scripts/run writes it to "
                       ".run/local-aws.env)")
    scope = signed.credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or scope[1] != signed.amz_date[:8]:
        return Refusal("IncompleteSignature", "the credential scope is malformed")
    if not hmac.compare_digest(scope[0].encode(), access.access_key_id.encode()):
        return Refusal("InvalidAccessKeyId", "the access key is not this run's (scripts/run writes it to "
                                             ".run/local-aws.env)")
    stale = _time_refusal(signed, now)
    if stale:
        return stale
    if _hashes_body(environ, signed) and int(environ.get("CONTENT_LENGTH") or 0) > MAX_HASHED_BODY_BYTES:
        return Refusal("RequestEntityTooLarge", f"a body may be at most {MAX_HASHED_BODY_BYTES >> 20} MiB")
    expected = _signature(environ, signed, access, region=scope[2], service=scope[3])
    if not hmac.compare_digest(expected.encode(), signed.signature.encode()):
        return Refusal("SignatureDoesNotMatch", "the signature does not match this request and key pair")
    return None


def _signed_header(authorization: str, amz_date: str) -> _Signed | None:
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != _ALGORITHM or not amz_date:
        return None
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    if not all(fields.get(name) for name in ("Credential", "SignedHeaders", "Signature")):
        return None
    return _Signed(fields["Credential"], tuple(fields["SignedHeaders"].split(";")), fields["Signature"], amz_date,
                   None)


def _signed_query(environ: dict) -> _Signed | None:
    params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    names = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date",
             "X-Amz-Expires")
    if params.get(names[0]) != _ALGORITHM or not all(params.get(name) for name in names):
        return None
    try:
        expires_s = int(params["X-Amz-Expires"])
    except ValueError:
        return None
    return _Signed(params["X-Amz-Credential"], tuple(params["X-Amz-SignedHeaders"].split(";")),
                   params["X-Amz-Signature"], params["X-Amz-Date"], expires_s)


def _time_refusal(signed: _Signed, now: float) -> Refusal | None:
    signed_at = _timestamp(signed.amz_date)
    if signed_at is None:
        return Refusal("IncompleteSignature", "X-Amz-Date is not a date of the form 20261206T233000Z")
    if signed_at - now > MAX_SKEW_S or (signed.expires_s is None and now - signed_at > MAX_SKEW_S):
        return Refusal("RequestTimeTooSkewed", "the request was signed more than 15 minutes from now")
    if signed.expires_s is not None and not 0 < signed.expires_s <= MAX_PRESIGNED_S:
        return Refusal("AuthorizationQueryParametersError", "X-Amz-Expires must be 1 s to 7 days")
    if signed.expires_s is not None and now > signed_at + signed.expires_s:
        return Refusal("AccessDenied", "the presigned URL has expired")
    return None


def _timestamp(amz_date: str) -> int | None:
    """Seconds since the epoch of an X-Amz-Date (strptime took a fifth of the guard's time)."""
    found = _AMZ_DATE.match(amz_date)
    if not found:
        return None
    year, month, day, hour, minute, second = map(int, found.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


@functools.lru_cache(64)
def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """SigV4's derived key, as botocore derives it: the same for a whole day of one region and service."""
    key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class _Verifier(SigV4Auth):
    """botocore's SigV4 signer, computing a received request's signature from what it said it signed."""

    def __init__(self, access: LocalAccess, region: str, service: str, environ: dict, signed: _Signed):
        super().__init__(Credentials(access.access_key_id, access.secret_access_key), service, region)
        self._environ = environ
        self._signed = signed

    def headers_to_sign(self, request):
        headers = HTTPHeaders()
        for name in self._signed.signed_headers:
            value = _header(self._environ, name)
            if value is not None:
                headers[name] = value
        return headers

    def payload(self, request):
        if _hashes_body(self._environ, self._signed):
            return hashlib.sha256(_read_body(self._environ)).hexdigest()
        # S3's clients sign the hash they claim for the body (and S3 checks it against the body).
        return self._environ.get("HTTP_X_AMZ_CONTENT_SHA256") or UNSIGNED_PAYLOAD

    def _normalize_url_path(self, path):
        # S3's signers sign the path as sent; the others sign it normalised.
        return path if self._service_name == "s3" else super()._normalize_url_path(path)

    def signature(self, string_to_sign, request):
        key = _signing_key(self.credentials.secret_key, request.context["timestamp"][0:8], self._region_name,
                           self._service_name)
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _signature(environ: dict, signed: _Signed, access: LocalAccess, region: str, service: str) -> str:
    verifier = _Verifier(access, region, service, environ, signed)
    path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", ""))).split("?")[0]
    query = "&".join(pair for pair in environ.get("QUERY_STRING", "").split("&")
                     if pair and not pair.startswith(_SIGNATURE_PARAM))
    request = AWSRequest(method=environ.get("REQUEST_METHOD", "GET"),
                         url=f"http://{environ.get('HTTP_HOST', '')}{path}" + (f"?{query}" if query else ""))
    request.context["timestamp"] = signed.amz_date
    canonical = verifier.canonical_request(request)
    return verifier.signature(verifier.string_to_sign(request, canonical), request)


def _hashes_body(environ: dict, signed: _Signed) -> bool:
    """Whether the signature covers the body's hash computed here: not presigned, no hash claimed in a header."""
    return signed.expires_s is None and not environ.get("HTTP_X_AMZ_CONTENT_SHA256")


def _header(environ: dict, name: str) -> str | None:
    key = name.upper().replace("-", "_")
    return environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}")


def _read_body(environ: dict) -> bytes:
    """The request's body, read once and put back as a copy for moto to read."""
    stream = environ["wsgi.input"]
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        body = stream.read(MAX_HASHED_BODY_BYTES + 1)   # a longer one cannot match its signature
    else:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = stream.read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class EndpointGuard:
    """WSGI middleware: answers the readiness probe, refuses what `refusal` refuses, passes the rest to moto."""

    def __init__(self, app, hosts: frozenset[str], access: LocalAccess, clock=time.time):
        self._app = app
        self._hosts = hosts
        self._access = access
        self._clock = clock

    def __call__(self, environ, start_response):
        found = refusal(environ, self._hosts, self._access, self._clock())
        if found is not None:
            log.warning("refused %s %s (Host %r, Sec-Fetch-Site %r): %s", environ.get("REQUEST_METHOD"),
                        environ.get("PATH_INFO"), environ.get("HTTP_HOST"), environ.get("HTTP_SEC_FETCH_SITE"),
                        found.code)
            return _refused(environ, start_response, found)
        if environ.get("PATH_INFO") == READY_PATH:
            return _reply(start_response, "200 OK", "application/json", json.dumps({"ready": True}).encode())
        return self._app(environ, start_response)


def _refused(environ: dict, start_response, found: Refusal):
    """A 403 in the shape the caller's protocol expects: JSON for the JSON protocols, else an XML ErrorResponse
    (which botocore's S3, query and EC2 parsers all read the code and message from)."""
    if environ.get("HTTP_X_AMZ_TARGET") or environ.get("PATH_INFO", "").startswith(CONTROL_PREFIXES):
        body = json.dumps({"__type": found.code, "message": found.message}).encode()
        return _reply(start_response, "403 Forbidden", "application/json", body,
                      [("x-amzn-ErrorType", found.code)])
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Code>{found.code}</Code>'
            f"<Message>{escape(found.message)}</Message></Error></ErrorResponse>").encode()
    return _reply(start_response, "403 Forbidden", "application/xml", body)


def _reply(start_response, status: str, content_type: str, body: bytes, extra: list | None = None):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *(extra or [])])
    return [body]
