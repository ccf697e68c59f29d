"""Who is calling, and whether they may: one before_request for every route, and the one table of access rules.

A caller proves who it is with `Authorization: Bearer <API key>` (programs) or the signed session
cookie that /signin sets (people); `g.principal` is then a Principal (web_tier/identity.py). Each
endpoint needs one of ANYONE, COURSE (anyone while SIGHTFLEET_OPEN_COURSE_ENDPOINT is on),
SIGNED_IN (the default, so a route nobody listed is never open), PERSON (signed in with a session,
not a key) or ADMIN. An anonymous API call
answers 401 with `WWW-Authenticate: Bearer`, an anonymous page redirects to /signin, a signed-in
non-admin gets 403. Keys and sessions are checked against the accounts table on every request
(no cache), so a revoked key or a deleted account stops at the next request.
"""
from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, request, session, url_for

from sightfleet.accounts import Accounts
from sightfleet.errors import NotFound, Unavailable
from sightfleet.sigv4 import SignatureError, SignedRequest, is_sigv4, verify
from web_tier.errors import error_response, unavailable_response
from web_tier.identity import ANONYMOUS_OWNER, Principal
from web_tier.rekognition import is_call, signed_path
from web_tier.rekognition.protocol import SERVICE as REKOGNITION
from web_tier.services import services

log = logging.getLogger(__name__)
ANYONE, COURSE, SIGNED_IN, PERSON, ADMIN = "anyone", "course", "signed-in", "person", "admin"
# By endpoint first, then by blueprint; anything else needs SIGNED_IN.
ENDPOINT_ACCESS = {
    "static": ANYONE,
    "health.healthz": ANYONE,
    "course.classify": COURSE,
    # The key pages live beside the sign-in pages, for people only: a key that could mint keys would
    # outlive its own revocation, and one that could revoke keys would lock its owner out.
    "signin.keys": PERSON,
    "signin.create_key": PERSON,
    "signin.create_access_key": PERSON,
    "signin.revoke_key": PERSON,
}
BLUEPRINT_ACCESS = {
    "signin": ANYONE,  # the sign-in pages themselves (the key pages say PERSON above)
    "ops": ADMIN,      # /ops, /api/ops/*, /metrics
    "reprocess": ADMIN,  # /api/admin/reprocess (web_tier/reprocess.py)
    "openapi": ANYONE,  # the API's contract and its interactive page (web_tier/openapi.py) are public
    "vocabulary": ANYONE,  # every label the service can return (web_tier/vocabulary.py): nobody's data
    "account": PERSON,  # /account/password: a person's own account, from a signed-in browser
}
COURSE_PRINCIPAL = Principal(ANONYMOUS_OWNER, "anonymous", via="anonymous")
# The session cookie's fields: the account's id, name and session epoch (checked against the table on each request),
# and when it proved who it is (minting a key needs a recent proof: web_tier/signin.py).
SESSION_ACCOUNT, SESSION_NAME, SESSION_EPOCH, SESSION_AUTH_AT = "account_id", "name", "epoch", "auth_at"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sightfleet"'}
ACCOUNTS_UNAVAILABLE = "accounts unreachable: who is calling cannot be checked right now; try again shortly"


def accounts() -> Accounts:
    return services().accounts


def required_access(endpoint: str | None) -> str:
    """What the endpoint needs, from the table above (SIGNED_IN when nobody listed it)."""
    if endpoint is None:
        return ANYONE  # no route matched: the 404 or 405 reveals nothing
    if endpoint in ENDPOINT_ACCESS:
        return ENDPOINT_ACCESS[endpoint]
    return BLUEPRINT_ACCESS.get(endpoint.split(".", 1)[0], SIGNED_IN)


def sign_in(principal: Principal) -> None:
    """Start a session for this account (a fresh cookie: nothing of an earlier session carries over)."""
    epoch = accounts().session_epoch(principal)
    session.clear()
    session.permanent = True
    session[SESSION_ACCOUNT], session[SESSION_NAME], session[SESSION_EPOCH] = principal.owner, principal.name, epoch
    session[SESSION_AUTH_AT] = time.time()


def sign_out() -> None:
    session.clear()


def safe_next(target: str | None, default: str = "/") -> str:
    """Where to go after sign-in: a path on this site only (no scheme, host, `//` or backslash tricks)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return default
    return target


def _from_header(header: str) -> Principal | None:
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return accounts().by_key(key.strip())


def _from_session() -> Principal | None:
    fields = [session.get(field) for field in (SESSION_NAME, SESSION_ACCOUNT, SESSION_EPOCH)]
    if not all(isinstance(value, str) for value in fields):
        return None
    principal = accounts().by_session(*fields)
    if principal is None:
        session.clear()  # the account was deleted, or signed out everywhere: the cookie goes too
    return principal


def _refuse_anonymous(access: str):
    """401 for programs, a redirect to /signin for a browser asking for a page."""
    wants_page = (request.method in ("GET", "HEAD") and not request.path.startswith("/api/")
                  and request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html")
    if wants_page:
        return redirect(url_for("signin.form", next=request.full_path.rstrip("?")))
    message = ("sign in or send `Authorization: Bearer <API key>`"
               if access != COURSE else "the course endpoint is closed to anonymous callers; send an API key")
    return error_response(401, "UNAUTHENTICATED", message, BEARER_CHALLENGE)


def _from_signature() -> Principal:
    """Who signed this Rekognition call with an access key (AWS Signature V4); SignatureError when nobody did."""
    signer = {}

    def secret_of(key_id: str) -> str | None:
        found = accounts().by_access_key(key_id)
        if found is None:
            return None
        signer["principal"], secret = found
        return secret
    signed = SignedRequest(request.method, signed_path(), request.query_string.decode("latin-1"),
                           dict(request.headers), request.get_data())
    verify(signed, REKOGNITION, secret_of)
    return signer["principal"]


def _signed_caller():
    if not is_call():
        return None, error_response(401, "BAD_CREDENTIALS", "AWS Signature V4 is taken on the Rekognition endpoint "
                                    "only; send `Authorization: Bearer <API key>`", BEARER_CHALLENGE)
    try:
        return _from_signature(), None
    except SignatureError as exc:
        return None, error_response(403, exc.code, exc.message)


def _caller():
    """Who the request proves to be (None: nobody), or the answer when its credentials fail or cannot be checked."""
    header = request.headers.get("Authorization")
    try:
        if header is None:
            return _from_session(), None
        if is_sigv4(header):
            return _signed_caller()
        principal = _from_header(header)
    except (Unavailable, NotFound) as exc:
        log.warning("%s %s: accounts table unavailable: %s", request.method, request.path, exc)
        return None, unavailable_response(ACCOUNTS_UNAVAILABLE)
    if principal is None:
        return None, error_response(401, "BAD_CREDENTIALS", "the API key is not valid (unknown or revoked)",
                                    BEARER_CHALLENGE)
    return principal, None


def authenticate():
    """before_request: set g.principal, and answer now when the caller may not go on."""
    if request.endpoint == "static":
        return None  # stylesheets and scripts are the same for everyone: no account lookup per file
    access = required_access(request.endpoint)
    principal, refusal = _caller()
    if refusal is not None:
        return refusal
    if principal is None and access == COURSE and current_app.config["SIGHTFLEET_OPEN_COURSE_ENDPOINT"]:
        principal = COURSE_PRINCIPAL
    g.principal = principal
    if access == ANYONE:
        return None
    if principal is None:
        return _refuse_anonymous(access)
    if access == ADMIN and not principal.admin:
        abort(403, description="only admins may see operations")
    if access == PERSON and principal.via != "session":
        abort(403, description="API keys are managed from a signed-in browser (/signin), not with an API key")
    return None


def install(app: Flask, open_course_endpoint: bool) -> None:
    """Check every request; the course endpoint's openness is read once here."""
    app.config["SIGHTFLEET_OPEN_COURSE_ENDPOINT"] = open_course_endpoint
    app.before_request(authenticate)
