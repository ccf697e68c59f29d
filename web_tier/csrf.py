"""CSRF protection: a form or header must carry a token that only this server can make for this browser's session.

Each browser holds a random id in the CSRF cookie; the token that pages embed is an HMAC, under the
app's secret key, of that id and the session's epoch (empty before sign-in). So a token:
- cannot be made by another site, even one that can plant cookies (a sibling subdomain): it would
  need the secret key;
- dies with the session: signing out everywhere or changing the password (a new epoch) ends every
  token issued before, in every browser.
The key is shared by every gunicorn worker and web instance (like the session's). Cookies are
SameSite=Lax, so a cross-site POST also arrives without them. Over HTTPS both cookies take the
`__Host-` prefix: the browser then accepts them only Secure, for this host alone and path /.

Every state-changing request that carries the session cookie is checked (`check_session_requests`),
whether or not it also carries the CSRF cookie: a session is what a forged request would ride on.
A request that proves who it is with an Authorization header needs no token: no other site can
make a browser send that header.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from flask import Flask, abort, current_app, g, request, session

COOKIE = "sightfleet_csrf"
HOST_PREFIX = "__Host-"
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
REFUSED = "the form expired or came from elsewhere; reload the page and try again"


def cookie_name(name: str) -> str:
    """A cookie's name as this request should see it: `__Host-` prefixed over HTTPS."""
    return HOST_PREFIX + name if request.is_secure else name


def _browser_id() -> str:
    """This browser's random id (from its CSRF cookie, or new and set on the response)."""
    if "csrf_id" not in g:
        sent = request.cookies.get(cookie_name(COOKIE), "")
        g.csrf_id = sent if _ID_RE.match(sent) else secrets.token_urlsafe(32)
        g.csrf_is_new = g.csrf_id != sent
    return g.csrf_id


def token_for(browser_id: str, epoch: str) -> str:
    """The token of one browser's session (pure: the app's key, the browser's id, the session's epoch)."""
    message = f"{browser_id}|{epoch}".encode()
    return hmac.new(current_app.secret_key.encode(), message, hashlib.sha256).hexdigest()


def csrf_token() -> str:
    """The token for this browser and session; pages embed it."""
    from web_tier.auth import SESSION_EPOCH   # auth needs this module's check; this needs only the field name
    epoch = session.get(SESSION_EPOCH)
    return token_for(_browser_id(), epoch if isinstance(epoch, str) else "")


def has_csrf_cookie() -> bool:
    """True when the request comes from a browser that holds our cookie (programs send none)."""
    return cookie_name(COOKIE) in request.cookies


def require_csrf() -> None:
    """Abort with 400 unless the form field or header carries this browser's session token."""
    sent = request.form.get(FIELD) or request.headers.get(HEADER, "")
    # Compared as bytes: compare_digest refuses a str with characters beyond ASCII (a 500 otherwise).
    if not (has_csrf_cookie() and sent and hmac.compare_digest(sent.encode(), csrf_token().encode())):
        abort(400, description=REFUSED)


def check_session_requests() -> None:
    """before_request: a state-changing request riding on a session must carry the CSRF token."""
    if request.method in SAFE_METHODS or "Authorization" in request.headers:
        return
    if cookie_name(current_app.config["SESSION_COOKIE_NAME"]) in request.cookies:
        require_csrf()


def install(app: Flask) -> None:
    """Check session requests, and set the cookie on responses that handed out a new browser id."""
    app.before_request(check_session_requests)

    @app.after_request
    def set_cookie(response):
        if g.get("csrf_is_new"):
            response.set_cookie(cookie_name(COOKIE), g.csrf_id, httponly=True, samesite="Lax",
                                secure=request.is_secure, max_age=30 * 86400, path="/")
        return response
