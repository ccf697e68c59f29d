"""gunicorn's own refusals (a request line or headers too long, a malformed request) in the API's JSON error shape.

gunicorn answers these itself, before the app sees the request, with an HTML page. Its workers write
every such answer through `gunicorn.util.write_error`; gunicorn.conf.py puts this writer in its place,
so a client reads `{"error": {"code", "message"}}` whichever layer refused it. The message says only
what was refused: gunicorn's text may echo the request, and a client needs no more than the reason.
"""
from __future__ import annotations

import json

from gunicorn import util

# What each of gunicorn's statuses means to a client (anything else: the reason phrase gunicorn gives).
MESSAGES = {
    400: "the request is malformed (its request line, a header or its chunked body)",
    414: "the request line is too long: send at most 4,094 characters of path and query string",
    431: "the request's headers are too many or too large",
}


def error_body(status: int, reason: str) -> bytes:
    """The JSON error for one of gunicorn's own answers."""
    code = reason.upper().replace(" ", "_") or "ERROR"
    message = MESSAGES.get(status, reason.lower() or "the server could not handle the request")
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def write_json_error(sock, status_int: int, reason: str, _mesg: str) -> None:
    """A drop-in for gunicorn.util.write_error that answers JSON."""
    body = error_body(status_int, reason)
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    """Make gunicorn write its own refusals as JSON (in the master, before it forks its workers)."""
    util.write_error = write_json_error
