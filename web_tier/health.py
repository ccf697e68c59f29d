"""GET /healthz: 200 only when the endpoint and every resource answered, within a bound however they hang.

Every check runs at once in a thread of its own, and the answer waits for them at most the deadline:
a check still running then reports a timeout (503). A hung check is not started again while it
runs, so a load balancer polling /healthz against a hung endpoint cannot pile up threads.

A verdict is reused for VERDICT_TTL_S: each one costs about nine AWS calls, and /healthz is open to
anyone, so a flood of it must not become a flood of AWS calls.

Only admins read which resource failed and how; everyone else (a load balancer, a stranger) learns
healthy or not, and the details go to the log.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from web_tier.errors import RETRY_HEADERS
from web_tier.identity import current_principal
from web_tier.services import services

bp = Blueprint("health", __name__)
UNHEALTHY_REASON = "a resource is unreachable (details in the logs)"


@bp.get("/healthz")
def healthz():
    problems = services().health.problems()
    principal = current_principal()
    if not problems:
        return jsonify({"status": "ok"})
    if principal is not None and principal.admin:
        return jsonify({"status": "unavailable", "problems": problems}), 503, RETRY_HEADERS
    return jsonify({"status": "unavailable", "reason": UNHEALTHY_REASON}), 503, RETRY_HEADERS
