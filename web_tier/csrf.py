"""Per-session CSRF tokens for state-changing forms (the JSON API uses no cookies, so needs none)."""
from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session


def csrf_token() -> str:
    """The session's token, created on first use; templates put it in a hidden field."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def require_csrf() -> None:
    """Abort with 400 unless the form carries the session's token."""
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(sent, session.get("csrf", "")) or not sent:
        abort(400, description="the form expired or came from elsewhere; reload the page and try again")
