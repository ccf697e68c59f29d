"""The ops dashboard (/ops), its JSON API (/api/ops/...), Prometheus /metrics and a local plotly.js."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Response, g, jsonify, render_template, request, send_file, url_for
from prometheus_client import CONTENT_TYPE_LATEST

from web_tier import ops_actions, ops_review
from web_tier.errors import error_response
from web_tier.opsdata import DEFAULT_WINDOW_S, OpsData, parse_window, prometheus_text
from web_tier.packaged import package_folder
from web_tier.services import services, settings

bp = Blueprint("ops", __name__)
WINDOW_CHOICES = (("2m", "2 min"), ("5m", "5 min"), ("15m", "15 min"), ("1h", "1 h"), ("3h", "3 h"), ("24h", "24 h"))
POLL_MS = 3000
SIGNALS_S = 15.0
# The plotly URL carries its version, so a year of caching never serves a stale library.
PLOTLY_MAX_AGE_S = 365 * 86400


ops_actions.register(bp)
ops_review.register(bp)


@bp.app_context_processor
def processing_state() -> dict:
    """Every page tells an admin when processing is paused (a cached read: no table call per page)."""
    principal = getattr(g, "principal", None)
    if principal is None or not principal.admin:
        return {}
    return {"processing_paused": ops_actions.control().current()}


def ops_data() -> OpsData:
    return services().ops


@lru_cache(maxsize=1)
def plotly_js() -> tuple[Path, str]:
    """plotly.min.js as shipped inside the Python plotly package, and that package's version."""
    folder, version = package_folder("plotly")
    return folder / "package_data" / "plotly.min.js", version


@bp.get("/ops")
def dashboard():
    try:
        window = request.args.get("window") or "15m"
        parse_window(window)
    except ValueError:
        window = "15m"
    choices = WINDOW_CHOICES if window in dict(WINDOW_CHOICES) else ((window, window), *WINDOW_CHOICES)
    return render_template("ops.html", windows=choices, window=window, poll_ms=POLL_MS,
                           plotly_url=url_for("ops.plotly", version=plotly_js()[1]))


@bp.get("/ops/plotly-<version>.min.js")
def plotly(version: str):
    path, current = plotly_js()
    if version != current:
        return error_response(404, "NOT_FOUND", f"plotly.js {current} is served here, not {version}")
    return send_file(path, mimetype="text/javascript", max_age=PLOTLY_MAX_AGE_S, conditional=True)


def full_summary() -> dict:
    """The summary with the control state, the latest operator actions and the alerts that need a person."""
    doc = dict(ops_data().summary())
    control = ops_actions.control()
    doc["control"] = ops_actions.control_document(control.current())
    effective = doc["control"]["effective"]   # the bounds in force, changed at run time or not
    doc["instances"] = {**doc["instances"], "min": effective["min_instances"], "max": effective["max_instances"]}
    doc["audit"] = services().ops_audit.get("audit", control.recent_audit)
    signals = services().ops_signals.get("signals", stack_signals)
    doc["alerts"] = services().ops_alerts.check(doc, settings(), **signals)
    return doc


def stack_signals() -> dict:
    """What the alerts need beyond the summary: /healthz's problems, and whether the rate limits fail open."""
    limiter = services().limiter
    # Flask-Limiter's own flag: its storage failed and it counts in memory meanwhile.
    fail_open = bool(getattr(limiter, "_storage_dead", False))
    return {"problems": services().health.problems(), "limits_fail_open": fail_open}


@bp.get("/api/ops/summary")
def summary():
    return jsonify(full_summary())


@bp.get("/api/ops/timeseries")
def timeseries():
    try:
        window_s = parse_window(request.args.get("window", str(DEFAULT_WINDOW_S)))
    except ValueError as exc:
        return error_response(400, "BAD_WINDOW", str(exc))
    return jsonify(ops_data().timeseries(window_s))


@bp.get("/metrics")
def metrics():
    body = prometheus_text(full_summary(), settings().prefix)
    return Response(body, content_type=CONTENT_TYPE_LATEST)


@bp.after_request
def no_store(response):
    # Live figures: never let a browser or proxy serve yesterday's fleet (plotly.js excepted).
    if request.endpoint != "ops.plotly":
        response.headers.setdefault("Cache-Control", "no-store")
    return response
