"""CSRF protection by double-submit cookie: the form or header must repeat the cookie's random token.

No server secret is involved, so it holds across gunicorn workers and web instances. Cookies are
SameSite=Lax, so a cross-site POST arrives without the cookie and fails the check.

Every state-changing request that carries the session cookie is checked (`check_session_requests`),
whether or not it also carries the CSRF cookie: a session is what a forged request would ride on.
A request that proves who it is with an Authorization header needs no token: no other site can
make a browser send that header.
"""
from __future__ import annotations

import hmac
import re
import secrets

from flask import Flask, abort, current_app, g, request

COOKIE = "sightfleet_csrf"
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def csrf_token() -> str:
    """This browser's token (from its cookie, or new and set on the response); pages embed it."""
    if "csrf" not in g:
        sent = request.cookies.get(COOKIE, "")
        g.csrf = sent if _TOKEN_RE.match(sent) else secrets.token_urlsafe(32)
        g.csrf_is_new = g.csrf != sent
    return g.csrf


def has_csrf_cookie() -> bool:
    """True when the request comes from a browser that holds our cookie (programs send none)."""
    return COOKIE in request.cookies


def require_csrf() -> None:
    """Abort with 400 unless the form field or header repeats the cookie's token."""
    cookie = request.cookies.get(COOKIE, "")
    sent = request.form.get(FIELD) or request.headers.get(HEADER, "")
    if not (cookie and sent and hmac.compare_digest(sent, cookie)):
        abort(400, description="the form expired or came from elsewhere; reload the page and try again")


def check_session_requests() -> None:
    """before_request: a state-changing request riding on a session must repeat the CSRF token."""
    if request.method in SAFE_METHODS or "Authorization" in request.headers:
        return
    if current_app.config["SESSION_COOKIE_NAME"] in request.cookies:
        require_csrf()


def install(app: Flask) -> None:
    """Check session requests, and set the cookie on responses that handed out a new token."""
    app.before_request(check_session_requests)

    @app.after_request
    def set_cookie(response):
        if g.get("csrf_is_new"):
            response.set_cookie(COOKIE, g.csrf, httponly=True, samesite="Lax", secure=request.is_secure,
                                max_age=30 * 86400)
        return response
