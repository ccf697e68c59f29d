"""GET /healthz: 200 only when the endpoint and every resource are reachable."""
from __future__ import annotations

from flask import Blueprint, jsonify

from web_tier.services import resources

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    problems = resources().problems()
    if problems:
        return jsonify({"status": "unavailable", "problems": problems}), 503
    return jsonify({"status": "ok"})
