"""Rekognition's JSON protocol at the web tier's base URL, for the unmodified AWS SDKs and CLI.

`POST /` with `X-Amz-Target: RekognitionService.<Operation>` is a Rekognition call; without that
header `POST /` stays the course endpoint (multipart). `Dispatch` tells them apart before Flask
routes the request and hands calls to this blueprint's one route. Callers sign with Signature V4
using an access key of their account (checked in web_tier/auth.py); rate limits and quotas apply
as for the REST API. Each call goes through the queue and the fleet like any upload; the web tier
only waits for the result (web_tier/rekognition/calls.py). views.install puts it all in place; the door
(web_tier/door.py) bounds a call's body like every route's.
"""
from __future__ import annotations

import json
import uuid

from flask import Response, request

from web_tier.rekognition.protocol import CONTENT_TYPE, TARGET_PREFIX, AwsError

ROUTE = "/_rekognition"   # where Dispatch sends calls; the path the client signed is kept in the environ
ENDPOINT = "rekognition.call"
SIGNED_PATH = "sightfleet.signed_path"


class Dispatch:
    """WSGI middleware: a POST / that names a Rekognition target goes to ROUTE, everything else as it came."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/" and \
                target.startswith(TARGET_PREFIX):
            environ[SIGNED_PATH] = "/"
            environ["PATH_INFO"] = ROUTE
        return self.app(environ, start_response)


def is_call() -> bool:
    """Whether the current request is a Rekognition call (then every answer takes the protocol's shape)."""
    return request.path == ROUTE


def signed_path() -> str:
    """The path the client signed (Dispatch rewrote it)."""
    return request.environ.get(SIGNED_PATH, request.path)


def aws_answer(doc: dict, status: int = 200, headers: dict | None = None) -> Response:
    """A body in the protocol's content type, with the request id every SDK reads."""
    response = Response(json.dumps(doc), status=status, mimetype=CONTENT_TYPE)
    response.headers.update(headers or {})
    response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return response


def aws_error_answer(error: AwsError, headers: dict | None = None) -> Response:
    """An error in the protocol's shape (`__type`, `message`), which botocore raises as that exception class."""
    return aws_answer(error.body(), error.status, {**(headers or {}), "x-amzn-ErrorType": error.aws_type})
