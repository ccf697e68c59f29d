"""/account/password: a person changes their password, and may revoke the keys made since the last change;
/account/features: what their uploads find by default (web_tier/features.py).

A key minted by someone who had the old password (or a stolen session) would outlive the change, so
the page lists the keys made since the password last changed and offers to revoke them with it. The
change ends every session (web_tier/accounts/service.py); this browser is signed in again at once.
"""
from __future__ import annotations

import logging

from flask import Blueprint, g, redirect, render_template, request, url_for

from web_tier.accounts import AccountError
from web_tier.auth import accounts, sign_in
from web_tier.csrf import require_csrf
from web_tier.features import CHOOSABLE, account_default, described, new_default
from web_tier.submit import Rejected
from web_tier.signin import MAX_FIELD_CHARS, WRONG_CREDENTIALS, verify_password

log = logging.getLogger(__name__)
bp = Blueprint("account", __name__, url_prefix="/account")


@bp.after_request
def no_referrer(response):
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _page(error: str | None = None, status: int = 200):
    account = accounts().get(g.principal.name)
    return render_template("password.html", error=error, has_password=bool(account.get("password_hash")),
                           new_keys=accounts().keys_since_password_change(account)), status


@bp.get("/password")
def password_form():
    return _page()


@bp.post("/password")
def change_password():
    require_csrf()
    new = request.form.get("new_password", "")
    if new != request.form.get("repeat_password", "") or len(new) > MAX_FIELD_CHARS:
        return _page("the two new passwords differ (or are longer than 1,024 characters)", 400)
    account = accounts().get(g.principal.name)
    if account.get("password_hash") and verify_password(g.principal.name, request.form.get("password", "")) is None:
        return _page(WRONG_CREDENTIALS, 403)
    revoke = [key["key_id"] for key in accounts().keys_since_password_change(account)
              if key["key_id"] in request.form.getlist("revoke")]
    try:
        accounts().set_password(g.principal.name, new)
    except AccountError as exc:
        return _page(str(exc), 400)
    for key_id in revoke:
        accounts().revoke(key_id, account)
    sign_in(g.principal)   # the change ended every session, this one too: this browser goes on
    log.info("%s changed their password and revoked %d keys made since the last change", g.principal.name, len(revoke))
    return redirect(url_for("signin.keys"), code=303)


def _features_page(error: str | None = None, status: int = 200, saved: bool = False):
    shown = described(g.principal.name, account_default(g.principal))
    return render_template("account_features.html", features=CHOOSABLE, shown=shown, error=error,
                           saved=saved), status


@bp.get("/features")
def features_form():
    return _features_page()


@bp.post("/features")
def save_features():
    """The features form: the ticked ones become the default; none ticked goes back to the stack's."""
    require_csrf()
    try:
        chosen = new_default(request.form.getlist("features"))
    except Rejected as exc:
        return _features_page(exc.message, 400)
    accounts().set_default_features(g.principal.name, chosen)
    log.info("%s set their default features to %s", g.principal.name, ",".join(chosen) if chosen else "the stack's")
    return _features_page(saved=True)
