"""The operators' actions under /api/ops/ (admins only, like the rest of the ops blueprint): retry failed
photos, redrive the dead-letter queue, pause and resume, purge a queue, change the fleet's settings,
and what each worker is doing. Each action is audited (sightfleet/control.py) and answers JSON.

A request does at most BUDGET_S seconds of work: a longer redrive or retry answers what it did and
what is left, and is sent again (the CLI, `python -m controller ops`, has no such bound).
"""
from __future__ import annotations

from flask import g, jsonify, request

from sightfleet import operations
from sightfleet.contracts import epoch, is_owner
from sightfleet.control import FLEET_FIELDS, Control, ControlState
from sightfleet.errors import Invalid
from web_tier.errors import error_response
from web_tier.services import resources, settings, services
from web_tier.workers_view import workers_document

BUDGET_S = 20.0
MAX_RETRY_PER_REQUEST = 1000
RATE_RANGE = (0.1, 100.0)


class BadBody(ValueError):
    """The JSON body does not fit the operation."""


def control() -> Control:
    shared = services()
    if shared.ops_control is None:
        shared.ops_control = Control(resources().fleet_log)
    return shared.ops_control


PAUSED_NOTICE = ("processing is paused by an operator: the photo is queued and is processed once processing "
                 "resumes")


def paused_notice() -> str | None:
    """What an upload's answer says while processing is paused (None while it runs)."""
    return PAUSED_NOTICE if control().current().paused else None


def who() -> str:
    return g.principal.name


def json_body(allowed: dict, keep_null: bool = False) -> dict:
    """The JSON object sent (empty when none), with only the allowed names and each of its type.

    A null is the same as leaving the field out, except with keep_null (PATCH: null resets a value).
    """
    doc = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(doc, dict):
        raise BadBody("send a JSON object (or no body)")
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise BadBody(f"unknown field(s): {', '.join(unknown)[:200]}; known: {', '.join(allowed)}")
    for name, kinds in allowed.items():
        value = doc.get(name)
        if value is not None and (isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds)):
            raise BadBody(f"{name} must be {' or '.join(k.__name__ for k in kinds)}")
    return doc if keep_null else {k: v for k, v in doc.items() if v is not None}


def bad_request(exc: Exception):
    """400 BAD_REQUEST saying what was wrong with the body."""
    return error_response(400, "BAD_REQUEST", str(exc))


def retry_filter(doc: dict) -> operations.RetryFilter:
    """The retry's filter from a request body; BadBody when a value cannot be used."""
    for name in ("since", "until"):
        if doc.get(name) is not None and epoch(doc[name]) is None:
            raise BadBody(f"{name} must be an ISO 8601 time, e.g. 2026-12-06T12:00:00Z")
    if doc.get("owner") is not None and not is_owner(doc["owner"]):
        raise BadBody("owner is not an account id")
    limit = doc.get("limit", MAX_RETRY_PER_REQUEST)
    if not 1 <= limit <= MAX_RETRY_PER_REQUEST:
        raise BadBody(f"limit must be from 1 to {MAX_RETRY_PER_REQUEST}")
    return operations.RetryFilter(code=doc.get("code"), owner=doc.get("owner"), album=doc.get("album"),
                                  since=doc.get("since"), until=doc.get("until"), limit=limit)


def retry():
    try:
        doc = json_body({"code": (str,), "owner": (str,), "album": (str,), "since": (str,), "until": (str,),
                     "limit": (int,)})
        flt = retry_filter(doc)
    except BadBody as exc:
        return bad_request(exc)
    report = operations.retry(resources(), flt, who(), budget_s=BUDGET_S)
    return jsonify(report.to_dict())


def redrive():
    try:
        doc = json_body({"rate_per_s": (int, float), "limit": (int,)})
        rate, limit = float(doc.get("rate_per_s", 10.0)), doc.get("limit", operations.MAX_MOVE)
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1] or not 1 <= limit <= operations.MAX_MOVE:
            raise BadBody(f"rate_per_s must be from {RATE_RANGE[0]} to {RATE_RANGE[1]:.0f}, "
                          f"limit from 1 to {operations.MAX_MOVE}")
    except BadBody as exc:
        return bad_request(exc)
    report = operations.redrive(resources(), who(), rate, limit, budget_s=BUDGET_S)
    return jsonify(report.to_dict())


def purge():
    try:
        queue = json_body({"queue": (str,)}).get("queue")
        if queue not in operations.QUEUES:
            raise BadBody(f"queue must be one of {', '.join(operations.QUEUES)}")
    except BadBody as exc:
        return bad_request(exc)
    report = operations.purge(resources(), queue, who(), budget_s=BUDGET_S)
    return jsonify(report.to_dict())


def pause():
    return _set_paused(True)


def resume():
    return _set_paused(False)


def _set_paused(paused: bool):
    try:
        json_body({})
    except BadBody as exc:
        return bad_request(exc)
    state = control().set_paused(paused, who())
    control().audit(who(), "pause" if paused else "resume", 1)
    return jsonify(control_document(state))


def fleet():
    try:
        changes = json_body({name: (int, float) if name == "idle_grace_s" else (int,) for name in FLEET_FIELDS},
                        keep_null=True)
        if not changes:
            raise BadBody(f"send one or more of {', '.join(FLEET_FIELDS)} (null: back to the deployed value)")
        state = control().set_fleet(settings(), changes, who())
    except (BadBody, Invalid) as exc:
        return bad_request(exc)
    control().audit(who(), "fleet settings", len(changes), {"changes": changes})
    return jsonify(control_document(state))


def workers():
    return jsonify(workers_document(resources()))


def control_document(state: ControlState) -> dict:
    """The control state, with the deployed and the effective fleet settings beside it."""
    deployed, effective = settings(), state.apply(settings())
    return {**state.to_dict(),
            "deployed": {name: getattr(deployed, name) for name in FLEET_FIELDS},
            "effective": {name: getattr(effective, name) for name in FLEET_FIELDS}}


def register(bp) -> None:
    """Add the action routes to the ops blueprint (so they are admin-only with it)."""
    for rule, view, method in (("/api/ops/retry", retry, "POST"), ("/api/ops/redrive", redrive, "POST"),
                               ("/api/ops/pause", pause, "POST"), ("/api/ops/resume", resume, "POST"),
                               ("/api/ops/purge", purge, "POST"), ("/api/ops/fleet", fleet, "PATCH"),
                               ("/api/ops/workers", workers, "GET")):
        bp.add_url_rule(rule, view.__name__, view, methods=[method])
