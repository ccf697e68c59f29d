"""Webhook endpoints through the API (`/api/webhooks`) and a page (`/webhooks`), each caller's own only.

Who may: any signed-in caller (API key or session), for its own account; the page's forms need the
session's CSRF token. How much: at most MAX_ENDPOINTS endpoints an account, bodies of a few KB, and
the rate limit every request counts against.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from sightfleet.webhooks import EVENTS, WebhookError
from web_tier.csrf import require_csrf
from web_tier.errors import error_response
from web_tier.owners import caller
from web_tier.submit import Rejected
from web_tier.webhooks.service import Webhooks
from web_tier.services import services

bp = Blueprint("webhooks", __name__)
MAX_BODY_BYTES = 8 * 1024


def webhooks() -> Webhooks:
    return services().webhooks


@bp.before_request
def small_bodies() -> None:
    """Registering an endpoint takes a URL and a few event names: nothing more is read."""
    request.max_content_length = MAX_BODY_BYTES


@bp.errorhandler(WebhookError)
def refused(exc: WebhookError):
    return error_response(400, "BAD_WEBHOOK", str(exc))


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Rejected(400, "BAD_WEBHOOK", 'send JSON: {"url": "https://...", "events": ["image.succeeded", ...]}')
    return body


@bp.get("/api/webhooks")
def list_webhooks():
    return jsonify({"webhooks": webhooks().hooks(caller().owner)})


@bp.post("/api/webhooks")
def create_webhook():
    body = _json_body()
    issued = webhooks().register(caller().owner, body.get("url"), body.get("events", list(EVENTS)))
    return jsonify({"webhook": issued.hook, "secret": issued.secret}), 201


def _own(hook_id: str) -> dict:
    found = webhooks().hook(caller().owner, hook_id)
    if found is None:
        raise Rejected(404, "NOT_FOUND", "no such webhook")
    return found


@bp.get("/api/webhooks/<hook_id>")
def get_webhook(hook_id: str):
    return jsonify(_own(hook_id))


@bp.delete("/api/webhooks/<hook_id>")
def delete_webhook(hook_id: str):
    if not webhooks().remove(caller().owner, hook_id):
        raise Rejected(404, "NOT_FOUND", "no such webhook")
    return "", 204


@bp.post("/api/webhooks/<hook_id>/enable")
def enable_webhook(hook_id: str):
    if not webhooks().enable(caller().owner, hook_id):
        raise Rejected(404, "NOT_FOUND", "no such webhook")
    return jsonify(_own(hook_id))


@bp.post("/api/webhooks/callback-secret")
def new_callback_secret():
    return jsonify({"secret": webhooks().new_callback_secret(caller().owner)}), 201


def _page(new=None, error: str | None = None, status: int = 200):
    return render_template("webhooks.html", hooks=webhooks().hooks(caller().owner), new=new, error=error,
                           events=EVENTS), status


@bp.get("/webhooks")
def page():
    return _page()


@bp.post("/webhooks")
def page_create():
    require_csrf()
    try:
        issued = webhooks().register(caller().owner, request.form.get("url", "").strip(),
                                     request.form.getlist("events"))
    except WebhookError as exc:
        return _page(error=str(exc), status=400)
    return _page(new=issued, status=201)


@bp.post("/webhooks/<hook_id>/<action>")
def page_action(hook_id: str, action: str):
    require_csrf()
    done = {"delete": webhooks().remove, "enable": webhooks().enable}.get(action)
    if done is None or not done(caller().owner, hook_id):
        return _page(error="no such webhook", status=404)
    return redirect(url_for("webhooks.page"))
