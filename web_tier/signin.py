"""Sign-in for people: /signin (name and password), one-time links, /signout, and /keys to manage API keys.

A failed sign-in says only "wrong user name or password", and costs one argon2 verification whether
or not the name exists, so neither the answer nor its timing tells which names have accounts. Every
password check (sign-in, minting a key, changing the password) goes through verify_password: the
guard counts it first, and the gate bounds how many run at once (web_tier/signin_guard.py).
"""
from __future__ import annotations

import logging
import time

from flask import Blueprint, g, redirect, render_template, request, session, url_for

from web_tier.accounts import AccountError
from web_tier.auth import SESSION_AUTH_AT, accounts, safe_next, sign_in, sign_out
from web_tier.csrf import require_csrf
from web_tier.errors import refusal
from web_tier.identity import Principal
from web_tier.signin_guard import SignInGuard, VerificationGate
from web_tier.services import services

log = logging.getLogger(__name__)
bp = Blueprint("signin", __name__)
WRONG_CREDENTIALS = "wrong user name or password"
BAD_LINK = "this sign-in link is not valid: it was used already, it expired, or it never existed"
TOO_MANY_FAILURES = "too many failed sign-ins for this name or from this address; try again in {wait_s} s"
MAX_FIELD_CHARS = 1024  # a password longer than this is refused before argon2 spends time on it
# Minting a key needs a sign-in this recent, or the password again: a cookie alone (stolen, or a
# browser left open) must not yield a key that outlives the session.
RECENT_AUTH_S = 10 * 60
CONFIRM_PASSWORD = ("confirm your password to create a key, or sign in again: you signed in more than 10 minutes "
                    "ago")


class HeldBack(Exception):
    """Too many password attempts for this name or from this address; wait_s says for how long."""

    def __init__(self, wait_s: int):
        super().__init__(TOO_MANY_FAILURES.format(wait_s=wait_s))
        self.wait_s = wait_s


def guard() -> SignInGuard:
    return services().signin_guard


def gate() -> VerificationGate:
    return services().verification_gate


def verify_password(name: str, password: str) -> Principal | None:
    """The account this name and password prove, or None; raises HeldBack (429) or VerifierBusy (503).

    The attempt is counted before anything else, so a concurrent burst cannot get past the guard's limits.
    """
    address = request.remote_addr
    wait_s = guard().admit(name, address)
    if wait_s:
        log.warning("sign-in held back for %d s: too many attempts for this name or from %s", wait_s, address)
        raise HeldBack(wait_s)
    if len(name) > MAX_FIELD_CHARS or len(password) > MAX_FIELD_CHARS:
        return None
    with gate().slot():
        principal = accounts().by_password(name, password)
    if principal is not None:
        guard().succeeded(name, address)
    return principal


@bp.app_context_processor
def inject():
    return {"principal": g.get("principal")}


@bp.after_request
def no_framing(response):
    # Credentials are typed here: never cached, never leaked in a Referer (a link's token is in its URL).
    # Framing is refused by the policy every response carries (web_tier/security.py).
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_errorhandler(HeldBack)
def held_back(exc: HeldBack):
    """429 with Retry-After: the sign-in form again for the sign-in page, the error page or JSON elsewhere."""
    headers = {"Retry-After": str(exc.wait_s)}
    if request.endpoint != "signin.submit":
        return refusal(429, "TOO_MANY_ATTEMPTS", str(exc), headers)
    page, status = _form(str(exc), 429, request.form.get("name", "")[:64])
    return page, status, headers


@bp.errorhandler(AccountError)
def account_gone(exc: AccountError):
    # The account was deleted while this request ran (its next request is anonymous).
    return render_template("error.html", status=404, code="NO_ACCOUNT", message=str(exc)), 404


def _form(error: str | None = None, status: int = 200, name: str = ""):
    target = safe_next(request.values.get("next"))
    return render_template("signin.html", error=error, next=target, name=name), status


@bp.get("/signin")
def form():
    return _form()


@bp.post("/signin")
def submit():
    require_csrf()  # also without a session: nobody may sign a browser into another account from elsewhere
    name, password = request.form.get("name", ""), request.form.get("password", "")
    principal = verify_password(name, password)
    if principal is None:
        log.info("sign-in refused for a name of %d characters from %s", len(name), request.remote_addr)
        return _form(WRONG_CREDENTIALS, 401, name[:64])
    sign_in(principal)
    log.info("%s signed in with a password", principal.name)
    return redirect(safe_next(request.form.get("next")))


@bp.get("/signin/link")
def link():
    """A one-time link's page: a button uses it. A GET spends nothing, so a chat app's link preview or a
    mail scanner cannot use the link up, and no other site can sign a browser into its own account."""
    token = request.args.get("token", "")[:MAX_FIELD_CHARS]
    return render_template("signin_link.html", token=token, next=safe_next(request.args.get("next")))


@bp.post("/signin/link")
def redeem_link():
    require_csrf()
    principal = accounts().redeem_link(request.form.get("token", "")[:MAX_FIELD_CHARS])
    if principal is None:
        return _form(BAD_LINK, 400)
    sign_in(principal)
    log.info("%s signed in with a one-time link", principal.name)
    return redirect(safe_next(request.form.get("next")))


@bp.post("/signout")
def signout():
    """End the session for good: a copy of the cookie (stolen, or on another device) stops working too.

    Session cookies are signed, not stored, so clearing this browser's copy alone would leave every
    other copy valid for its 7 days; a new session epoch ends them all (every device signs in again).
    """
    require_csrf()
    principal = g.get("principal")
    if principal is not None and principal.via == "session":
        accounts().end_sessions(principal.name)
    sign_out()
    return redirect(url_for("signin.form"))


def _keys_page(new_key=None, status: int = 200, error: str | None = None, new_access_key=None):
    account = accounts().get(g.principal.name)
    return render_template("keys.html", keys=accounts().keys(account), new_key=new_key, error=error,
                           recent=_recently_signed_in(), access_keys=accounts().access_keys(account),
                           new_access_key=new_access_key, web_url=request.host_url.rstrip("/")), status


def _recently_signed_in() -> bool:
    signed_in_at = session.get(SESSION_AUTH_AT)
    return isinstance(signed_in_at, (int, float)) and 0 <= time.time() - signed_in_at <= RECENT_AUTH_S


@bp.get("/keys")
def keys():
    return _keys_page()


@bp.post("/keys")
def create_key():
    require_csrf()
    if not _confirmed():
        return _keys_page(status=403, error=CONFIRM_PASSWORD)
    issued = accounts().issue_key(accounts().get(g.principal.name), request.form.get("label", "").strip())
    return _keys_page(new_key=issued)


def _confirmed() -> bool:
    """A key may be minted after a recent sign-in, or with the password typed again (which counts as one)."""
    if _recently_signed_in():
        return True
    password = request.form.get("password", "")
    if not password or verify_password(g.principal.name, password) is None:   # none typed: no attempt counted
        return False
    session[SESSION_AUTH_AT] = time.time()
    return True


@bp.post("/keys/access")
def create_access_key():
    require_csrf()
    if not _confirmed():
        return _keys_page(status=403, error=CONFIRM_PASSWORD)
    issued = accounts().issue_access_key(accounts().get(g.principal.name), request.form.get("label", "").strip())
    return _keys_page(new_access_key=issued)


@bp.post("/keys/<key_id>/revoke")
def revoke_key(key_id: str):
    require_csrf()
    if not accounts().revoke(key_id, accounts().get(g.principal.name)):
        return _keys_page(status=404)
    return redirect(url_for("signin.keys"))
