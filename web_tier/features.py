"""What an upload asks the workers to find (`features`), and each account's default: `/api/account/features`.

A photo runs the features its upload names (form field or query parameter, comma-separated or repeated),
else its account's default, else the stack's (Settings.features); moderation is added whenever the stack
moderates (sightfleet.features.effective_features). A bad name is refused with 400 before any work.
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, jsonify, request

from sightfleet.accounts import AccountError
from sightfleet.features import FEATURES, MODERATION, effective_features, parse_features, stored_features
from web_tier.auth import accounts
from web_tier.owners import caller
from web_tier.services import settings
from web_tier.submit import Rejected

log = logging.getLogger(__name__)
bp = Blueprint("features", __name__, url_prefix="/api/account")
# The features a person chooses (moderation is the stack's choice, not the uploader's).
CHOOSABLE = tuple(feature for feature in FEATURES if feature != MODERATION)
FEATURE_NAMES = {"labels": "Objects and scenes", "text": "Text in the photo", "faces": "Faces (how many, where)",
                 "properties": "Colours and quality", "moderation": "Unsafe content"}


def checked_features(values: list[str], name: str = "features") -> tuple[str, ...]:
    """Features from a parameter's values (each comma-separated); Rejected (400, BAD_FEATURES) with the reason."""
    try:
        return parse_features(",".join(values))
    except ValueError as exc:
        raise Rejected(400, "BAD_FEATURES", f"{name}: {exc}") from None


def requested_features() -> tuple[str, ...] | None:
    """The features an upload names (query string, then form fields); None when it names none."""
    values = request.args.getlist("features")
    if not values and request.mimetype == "multipart/form-data":
        values = request.form.getlist("features")
    return checked_features(values) if values else None


def account_default(principal=None) -> tuple[str, ...] | None:
    """The caller's account default (None: the stack's), as read with the account at authentication."""
    return (principal or caller()).default_features


def upload_features() -> tuple[str, ...]:
    """The features the request's uploads run (checked before any file is read further)."""
    requested = requested_features()
    return effective_features(requested, account_default(), settings().default_features, settings().moderation)


def described(name: str, stored) -> dict:
    """An account's feature settings as the API shows them."""
    default = stored_features(stored)
    return {"account": name, "default_features": list(default) if default else None,
            "stack_features": list(settings().default_features), "moderation": settings().moderation,
            "effective_features": list(effective_features(None, default, settings().default_features,
                                                          settings().moderation))}


@bp.get("/features")
def get_features():
    """The caller's default features (admins: any account's with `?account=<name>`) and what an upload gets."""
    name = request.args.get("account", "").strip() or caller().name
    if name != caller().name and not caller().admin:
        abort(403, description="only admins read other accounts' settings")
    try:
        account = accounts().get(name)
    except AccountError:
        abort(404, description="no such account")
    return jsonify(described(account["name"], account.get("default_features")))


@bp.put("/features")
def put_features():
    """Set the caller's default features (`features`: comma-separated; empty: back to the stack's)."""
    if caller().via == "anonymous":
        abort(401, description="sign in, or send an API key as `Authorization: Bearer <key>`")
    chosen = new_default(_sent_values())
    accounts().set_default_features(caller().name, chosen)
    log.info("%s set their default features to %s", caller().name, ",".join(chosen) if chosen else "the stack's")
    return jsonify(described(caller().name, chosen))


def new_default(values: list[str]) -> tuple[str, ...] | None:
    """The default an account asks for: None (the stack's) for nothing or only empty values."""
    return checked_features(values) if any(v.strip() for v in values) else None


def _sent_values() -> list[str]:
    """`features` from a JSON body ({"features": [...] | "a,b" | null}), the form or the query string."""
    if request.is_json:
        body = request.get_json(silent=True)
        sent = body.get("features") if isinstance(body, dict) else None
        if sent is None:
            return []
        if isinstance(sent, list) and all(isinstance(v, str) for v in sent):
            return sent
        if isinstance(sent, str):
            return [sent]
        raise Rejected(400, "BAD_FEATURES", "features is a list of names, a comma-separated string, or null")
    return request.form.getlist("features") or request.args.getlist("features")
