"""The OpenAPI paths and schemas of the operators' actions (web_tier/ops_actions.py), for web_tier/openapi.py."""
from __future__ import annotations

from sightfleet import operations
from sightfleet.control import FLEET_FIELDS, IDLE_GRACE_RANGE
from web_tier import ops_actions

ADMIN = "Administrators only; audited (who, what, when, how many: in the log and on /ops)."


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(properties: dict, required: list[str] | None = None) -> dict:
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


def _answer(description: str, schema: str, admin: dict, bad: dict | None = None) -> dict:
    answers = {"200": {"description": description, "content": {"application/json": {"schema": _ref(schema)}}},
               **admin}
    if bad:
        answers["400"] = bad
    return answers


def _action(operation_id: str, summary: str, description: str, responses: dict, body: dict | None = None) -> dict:
    doc = {"operationId": operation_id, "tags": ["operations"], "summary": summary,
           "description": f"{description} {ADMIN}", "responses": responses}
    if body:
        doc["requestBody"] = body
    return doc


def paths(admin: dict, bad: dict) -> dict:
    """The /api/ops action paths; admin: the shared 401/403/429/503 answers, bad: the 400 answer."""
    text, time = {"type": "string", "maxLength": 200}, {"type": "string", "format": "date-time"}
    nullable_count = {"type": ["integer", "null"], "minimum": 0}
    low, high = IDLE_GRACE_RANGE
    fleet = {name: nullable_count for name in FLEET_FIELDS if name != "idle_grace_s"}
    fleet["idle_grace_s"] = {"type": ["number", "null"], "minimum": low, "maximum": high}
    report = _answer("What was done, skipped and left", "OpsActionReport", admin, bad)
    state = _answer("The control state now", "OpsControl", admin, bad)
    return {
        "/api/ops/retry": {"post": _action(
            "opsRetry", "Retry FAILED photos whose original is still stored",
            "Filters by error code, owner, album and submission time; a photo retried twice is processed once "
            f"more. At most {ops_actions.MAX_RETRY_PER_REQUEST} photos and {ops_actions.BUDGET_S:.0f} s a request.",
            report, _body({"code": text, "owner": text, "album": text, "since": time, "until": time,
                           "limit": {"type": "integer", "minimum": 1,
                                     "maximum": ops_actions.MAX_RETRY_PER_REQUEST}}))},
        "/api/ops/redrive": {"post": _action(
            "opsRedrive", "Move dead letters back to the request queue at a chosen rate",
            "Jobs the dead-letter sweep marked FAILED are QUEUED again; `left` counts what is still there.",
            report, _body({"rate_per_s": {"type": "number", "minimum": ops_actions.RATE_RANGE[0],
                                          "maximum": ops_actions.RATE_RANGE[1]},
                           "limit": {"type": "integer", "minimum": 1, "maximum": operations.MAX_MOVE}}))},
        "/api/ops/purge": {"post": _action(
            "opsPurge", "Empty the request or dead-letter queue",
            f"Every photo it held that is not final is marked FAILED with code {operations.PURGED}.",
            report, _body({"queue": {"type": "string", "enum": list(operations.QUEUES)}}, ["queue"]))},
        "/api/ops/pause": {"post": _action(
            "opsPause", "Pause processing", "Uploads are still accepted; nothing is launched or started; "
            "workers finish what they hold and go to the warm pool.", state)},
        "/api/ops/resume": {"post": _action("opsResume", "Resume processing", "The backlog is picked up.", state)},
        "/api/ops/fleet": {"patch": _action(
            "opsFleet", "Change the fleet's settings at run time",
            "Within the deployed limits (0 to the deployed maximum); null puts back the deployed value.",
            state, _body(fleet))},
        "/api/ops/workers": {"get": _action(
            "opsWorkers", "What each live worker is doing",
            "Photos held and for how long, stage, model versions, CPU and memory; outliers flagged.",
            _answer("The live workers", "OpsWorkers", admin))},
    }


def schemas() -> dict:
    count = {"type": "integer", "minimum": 0}
    optional_text = {"type": ["string", "null"]}
    settings = {"type": "object", "properties": {name: {"type": "number"} for name in FLEET_FIELDS}}
    return {
        "OpsActionReport": {
            "type": "object", "required": ["action", "done", "skipped", "ids"],
            "properties": {"action": {"type": "string"}, "done": count,
                           "skipped": {"type": "object", "additionalProperties": count},
                           "ids": {"type": "array", "items": {"type": "string"}},
                           "left": {"type": "object"}}},
        "OpsControl": {
            "type": "object", "required": ["paused", "deployed", "effective"],
            "properties": {"paused": {"type": "boolean"}, "paused_by": optional_text, "paused_at": optional_text,
                           "updated_by": optional_text, "updated_at": optional_text,
                           **{name: {"type": ["number", "null"]} for name in FLEET_FIELDS},
                           "deployed": settings, "effective": settings}},
        "OpsWorkers": {
            "type": "object", "required": ["generated_at", "workers"],
            "properties": {"generated_at": {"type": "string"}, "outlier_bound": {"type": "object"},
                           "workers": {"type": "array", "items": {"type": "object", "required": [
                               "instance_id", "holding", "outlier"], "properties": {
                               "instance_id": {"type": "string"}, "outlier": {"type": "boolean"},
                               "holding": {"type": "array", "items": {"type": "object"}}}}}}},
    }
