"""Error answers: JSON {"error": {"code", "message"}} with fitting status codes, or a page for browsers."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sightfleet.aws.dynamodb import NoSuchResult
from sightfleet.errors import Invalid, NotFound, Unavailable
from web_tier.rekognition import aws_error_answer, is_call
from web_tier.rekognition.protocol import as_aws_error
from web_tier.services import settings
from web_tier.signin_guard import BUSY_RETRY_AFTER_S, VerifierBusy
from web_tier.submit import MAX_IMAGES_PER_REQUEST, Rejected

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5
RETRY_HEADERS = {"Retry-After": str(RETRY_AFTER_S)}   # on every 503: when a client may try again
UNAVAILABLE_MESSAGE = "storage or queue unreachable; try again shortly"


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra):
    """The JSON error body; extra fields go beside "error" (e.g. images already accepted).

    A Rekognition call gets the same refusal in its protocol's shape, as the exception its SDK knows.
    """
    if is_call():
        return aws_error_answer(as_aws_error(status, code, message), headers)
    response = jsonify({"error": {"code": code, "message": message}, **extra})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def unavailable_response(message: str = UNAVAILABLE_MESSAGE, **extra):
    """503 with Retry-After: the queue or storage cannot be reached right now."""
    return error_response(503, "UNAVAILABLE", message, RETRY_HEADERS, **extra)


def _wants_page() -> bool:
    # Browsers get a page; programs (and the whole /api) get JSON.
    if request.path.startswith("/api/") or is_call():
        return False
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def refusal(status: int, code: str, message: str, headers: dict | None = None):
    """A refusal as the caller reads it: the error page for a browser asking for a page, else the JSON error."""
    if _wants_page():
        page = render_template("error.html", status=status, code=code, message=message)
        return page, status, headers or {}
    return error_response(status, code, message, headers)


def _too_large_reason() -> tuple[str, str]:
    """Which of werkzeug's bounds a 413 came from: the body's length, or the form's parts and fields.

    Without a declared length (a chunked body) the body's length is the bound that was hit. Nothing
    here may touch request.form or request.stream: that would raise again.
    """
    length, limit = request.content_length, request.max_content_length
    if length is not None and limit is not None and length <= limit:
        return "TOO_MANY_PARTS", (f"the form has more than {request.max_form_parts} parts or a text field over "
                                  f"{request.max_form_memory_size:,} bytes; send at most "
                                  f"{MAX_IMAGES_PER_REQUEST} files per request")
    return "TOO_LARGE", (f"the request is larger than allowed ({settings().max_upload_mb:g} MB per image, "
                         f"at most {MAX_IMAGES_PER_REQUEST} images per request)")


def register(app: Flask) -> None:
    """Install handlers that turn the project's errors into answers."""

    @app.errorhandler(Rejected)
    def rejected(exc: Rejected):
        return refusal(exc.status, exc.code, exc.message)

    @app.errorhandler(NoSuchResult)
    def not_found(_exc: NoSuchResult):
        return refusal(404, "NOT_FOUND", "no such image")

    # Any other NotFound is a missing queue, bucket or table: out of reach, not a bad request.
    @app.errorhandler(NotFound)
    @app.errorhandler(Unavailable)
    def unavailable(exc: Exception):
        log.warning("%s %s: backend unavailable: %s", request.method, request.path, exc)
        return refusal(503, "UNAVAILABLE", UNAVAILABLE_MESSAGE, RETRY_HEADERS)

    # A request the backend can never serve as made (a key or value out of its bounds) is the client's.
    @app.errorhandler(Invalid)
    def invalid(exc: Invalid):
        log.warning("%s %s: refused by the backend as invalid: %s", request.method, request.path, exc)
        return refusal(400, "INVALID_REQUEST", "the request cannot be served as made; check its parameters")

    @app.errorhandler(VerifierBusy)
    def busy(_exc: VerifierBusy):
        return refusal(503, "BUSY", "too many sign-ins are being checked right now; try again in a second",
                       {"Retry-After": str(BUSY_RETRY_AFTER_S)})

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return refusal(413, *_too_large_reason())

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return refusal(exc.code or 500, (exc.name or "error").upper().replace(" ", "_"),
                       exc.description or exc.name)
