"""JSON error answers: {"error": {"code", "message"}} with fitting status codes."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from sightfleet.errors import NotFound, Unavailable
from web_tier.submit import Rejected

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register(app: Flask) -> None:
    """Install handlers that turn the project's errors into JSON answers."""

    @app.errorhandler(Rejected)
    def rejected(exc: Rejected):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound):
        return error_response(404, "NOT_FOUND", str(exc))

    @app.errorhandler(Unavailable)
    def unavailable(exc: Unavailable):
        log.warning("%s %s: backend unavailable: %s", request.method, request.path, exc)
        return error_response(503, "UNAVAILABLE", "storage or queue unreachable; try again shortly",
                              {"Retry-After": str(RETRY_AFTER_S)})

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        limit = app.config["SETTINGS"].max_upload_mb
        return error_response(413, "TOO_LARGE", f"the request is larger than allowed ({limit:g} MB per image)")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_response(exc.code or 500, (exc.name or "error").upper().replace(" ", "_"),
                              exc.description or exc.name)
