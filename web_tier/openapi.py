"""The API's contract: an OpenAPI 3.1 document written as data, and a local Swagger UI page to try it.

The document is built once per app from the same constants the views enforce (page sizes, waits,
upload limits), so a limit changed in code changes the contract with it. Swagger UI's files come from
the flask-swagger-ui wheel and are served from our own origin; the page's start-up code is a static
file (static/swagger-init.js), so the page runs under the app's strict Content-Security-Policy.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Flask, jsonify, render_template, send_from_directory, url_for

from sightfleet.contracts import STATUSES
from web_tier import api, course_endpoint, door, errors, openapi_features, openapi_labels, openapi_ops, opsdata
from web_tier.packaged import package_folder
from web_tier.services import settings, services
from sightfleet.webhooks import EVENTS
from web_tier.submit import MAX_IMAGES_PER_REQUEST
from web_tier.webhooks.service import MAX_ENDPOINTS

bp = Blueprint("openapi", __name__)
OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
SWAGGER_UI_PACKAGE = "flask-swagger-ui"
IMAGE_ID_PATTERN = "^[0-9a-f]{32}$"
# Media types a raw image body may declare (any image/* is taken: the first bytes decide the format).
RAW_IMAGE_TYPES = ("image/jpeg", "image/png")
# A day: the asset URLs carry the package's version, so an upgrade is fetched at once.
ASSET_MAX_AGE_S = 86400
CURSOR_DESCRIPTION = ("Opaque and signed: pass it as `cursor` for the next page of the same listing; null on the "
                      "last page. A changed or foreign cursor is refused 400 `BAD_CURSOR`")


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict) -> dict:
    return {"oneOf": [schema, {"type": "null"}]}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _response(name: str) -> dict:
    return {"$ref": f"#/components/responses/{name}"}


def _error_response(description: str, headers: dict | None = None) -> dict:
    """A JSON error answer: {"error": {"code", "message"}}."""
    answer = {"description": description, "content": _json(_ref("Error"))}
    if headers:
        answer["headers"] = headers
    return answer


def _query(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _path(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _retry_after(required: bool = True) -> dict:
    return {"Retry-After": {"description": "Seconds after which the request may be sent again.", "required": required,
                            "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


# Every operation behind authentication can answer these; the rate limits apply to all of them, and every
# route has a body limit (web_tier/door.py).
_COMMON = {"401": _response("Unauthenticated"), "413": _response("TooLarge"), "429": _response("RateLimited"),
           "503": _response("Unavailable")}
_ADMIN = {**_COMMON, "403": _response("Forbidden")}
# Operations anyone may call: the course endpoint (its generator sends no credentials) and health.
_OPEN = [{}, {"bearerAuth": []}]


def _schemas() -> dict:
    """The shapes of bodies, from what present(), the error handlers and the ops views return."""
    text = {"type": "string"}
    optional_text = _nullable(text)
    return {
        "Error": {
            "type": "object", "required": ["error"],
            "description": "Every error answer. A 503 after part of a request was accepted also lists those "
                           "`images`, so a client resends only the others (`deleted`: how many an album delete "
                           "removed before it stopped).",
            "properties": {
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "description": "A stable code, e.g. UNSUPPORTED_FORMAT, TOO_LARGE, "
                                                              "NOT_FOUND, RATE_LIMITED, UNAVAILABLE"},
                    "message": {"type": "string", "description": "What went wrong, for people"}}},
                "images": {"type": "array", "items": _ref("Image")},
                "deleted": {"type": "integer", "minimum": 0}}},
        "Label": {
            "type": "object", "required": ["Name", "Confidence"],
            "description": "As Rekognition DetectLabels names them; boxes are ratios of the width and height.",
            "properties": {
                "Name": text, "Confidence": {"type": "number", "minimum": 0, "maximum": 100},
                "Instances": {"type": "array", "items": {"type": "object", "properties": {
                    "Confidence": {"type": "number"},
                    "BoundingBox": {"type": "object", "properties": {
                        k: {"type": "number"} for k in ("Width", "Height", "Left", "Top")}}}}},
                **{key: {"type": "array", "description": description, "items": {
                    "type": "object", "required": ["Name"], "properties": {"Name": text}}}
                   for key, description in (("Parents", "Every ancestor, nearest first; each is a label too"),
                                            ("Aliases", "Other names a search finds it by"),
                                            ("Categories", "Rekognition-style categories"))}}},
        "Image": {
            "type": "object", "required": ["id", "album", "filename", "status", "submitted_at", "status_url"],
            "description": "One image's result as it moves QUEUED -> PROCESSING -> SUCCEEDED | FAILED.",
            "properties": {
                "id": {"type": "string", "pattern": IMAGE_ID_PATTERN},
                "album": text, "filename": {"type": "string", "description": "The name sent, made safe to show"},
                "owner": {"type": "string", "description": "The account id the image belongs to"},
                "content_type": {"type": "string", "enum": list(RAW_IMAGE_TYPES)},
                "size": {"type": "integer", "minimum": 0},
                "status": {"type": "string", "enum": list(STATUSES)},
                "labels": {"type": "array", "items": _ref("Label")},
                "top_label": optional_text,
                "label_model_version": _nullable({"type": "string", "description":
                                                  "Detector + classifier + vocabulary version that made the labels"}),
                "label_filters": _nullable({"type": "object", "description": "The label filters the upload asked "
                                            "for (MinConfidence, MaxLabels, inclusion and exclusion lists)"}),
                "metadata": {"type": "object", "description": "EXIF and image facts: creation time, GPS, camera, "
                                                              "width, height, file size, format, orientation"},
                "error": _nullable({"type": "object", "required": ["code", "message"],
                                    "properties": {"code": text, "message": text}}),
                "submitted_at": {"type": "string", "format": "date-time"},
                **{f"{name}_at": _nullable({"type": "string", "format": "date-time"})
                   for name in ("updated", "started", "completed")},
                "timings": {"type": "object", "additionalProperties": {"type": "number"}},
                "attempts": {"type": "integer", "minimum": 0},
                "instance_id": optional_text,
                **{f"{name}_key": optional_text for name in ("input", "thumbnail", "annotated", "result")},
                "status_url": text, "page_url": text,
                "thumbnail_url": optional_text, "annotated_url": optional_text,
                **openapi_features.image_properties()}},
        "Webhook": {
            "type": "object", "required": ["hook_id", "url", "events", "status"],
            "properties": {
                "hook_id": text, "url": text, "events": {"type": "array", "items": {"type": "string",
                                                                                    "enum": list(EVENTS)}},
                "status": {"type": "string", "enum": ["active", "disabled"]}, "disabled_reason": optional_text,
                "failures": {"type": "integer", "minimum": 0}, "created_at": text,
                "deliveries": {"type": "array", "items": {"type": "object", "properties": {
                    "delivery_id": text, "event": text, "image_id": text, "status": text,
                    "attempts": {"type": "integer"}, "code": {"type": "integer"}, "detail": text, "at": text}}}}},
        "AlbumDeleted": {
            "type": "object", "required": ["album", "deleted"],
            "properties": {"album": text, "deleted": {"type": "integer", "minimum": 0}}},
        "Images": {
            "type": "object", "required": ["images"],
            "properties": {"images": {"type": "array", "items": _ref("Image")}}},
        "ImagePage": {
            "type": "object", "required": ["images", "next_cursor"],
            "properties": {"images": {"type": "array", "items": _ref("Image")},
                           "next_cursor": _nullable({"type": "string",
                                                     "description": CURSOR_DESCRIPTION})}},
        **openapi_labels.schemas(), **openapi_features.schemas(),
        "Health": {
            "type": "object", "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                           "problems": {"type": "array", "items": text,
                                        "description": "Which resource failed and why (administrators only)"}}},
        "OpsSummary": {
            "type": "object", "required": ["generated_at", "instances", "queue", "totals", "recent", "workers",
                                           "decisions"],
            "properties": {
                "generated_at": {"type": "string", "format": "date-time"},
                "instances": {"type": "object", "properties": {
                    **{k: {"type": "integer"} for k in ("running", "pending", "pooled", "desired", "max", "min")},
                    "decided_at": optional_text}},
                "queue": {"type": "object", "properties": {
                    k: {"type": "integer"} for k in ("visible", "in_flight", "delayed", "dead_letter")}},
                "totals": {"type": "object"}, "recent": {"type": "object"},
                "workers": {"type": "array", "items": {"type": "object"}},
                "decisions": {"type": "array", "items": {"type": "object"}}}},
        "OpsTimeseries": {
            "type": "object", "required": ["start", "end", "step_s", "timestamps", "series", "window_totals"],
            "properties": {
                "start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"},
                "step_s": {"type": "integer", "minimum": 1},
                "timestamps": {"type": "array", "items": text},
                "series": {"type": "object", "additionalProperties": {
                    "type": "array", "items": _nullable({"type": "number"})}},
                "window_totals": {"type": "object"}}},
    }


def _responses() -> dict:
    """Answers shared by many operations, with the headers they really carry."""
    return {
        "BadRequest": _error_response("The request is malformed; `error.code` says which part."),
        "Unauthenticated": _error_response(
            "No valid credentials: send `Authorization: Bearer <API key>` (or sign in).",
            {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}}),
        "Forbidden": _error_response("Signed in, but only administrators may do this (or see other owners')."),
        "NotFound": _error_response("No such image, or it belongs to someone else (the two read the same)."),
        "TooLarge": _error_response("Over a size limit (code TOO_LARGE, TOO_MANY_FILES, TOO_MANY_PARTS or "
                                    "IMAGE_TOO_LARGE). Each route bounds its body before reading it: one image "
                                    "for a raw upload and `POST /`, ten for a multipart upload, "
                                    f"{door.DEFAULT_BODY_BYTES // 1024} KiB elsewhere."),
        "UnsupportedType": _error_response("Neither JPEG nor PNG (UNSUPPORTED_FORMAT), or a body type not accepted "
                                           "(UNSUPPORTED_MEDIA_TYPE)."),
        "RateLimited": _error_response("Too many requests (RATE_LIMITED: per address before authentication, per "
                                       "key or owner, and a lower rate for anonymous callers), or the owner holds "
                                       "as many images as the quota allows (QUOTA_EXCEEDED; anonymous callers "
                                       "share a quota per expiry period).", _retry_after()),
        "Unavailable": _error_response(f"Storage or queue unreachable; retry after {errors.RETRY_AFTER_S} s.",
                                       _retry_after()),
    }


def _upload_body() -> dict:
    limit = f"{settings().max_upload_mb:g} MB"
    return {"required": False, "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {
                "file": {"type": "array", "maxItems": MAX_IMAGES_PER_REQUEST,
                         "items": {"type": "string", "format": "binary"},
                         "description": f"One part per image, at most {MAX_IMAGES_PER_REQUEST}, each up to {limit}"},
                "album": {"type": "string", "description": "Album for every image (default `default`)"},
                **openapi_features.upload_form_field()}},
            "encoding": {"file": {"contentType": "image/jpeg, image/png, application/octet-stream"}}},
        **{media: {"schema": {"type": "string", "format": "binary",
                              "description": f"One image as the whole body, up to {limit}"}}
           for media in RAW_IMAGE_TYPES}}}


def _album_query() -> dict:
    return _query("album", "Album name (letters, digits, spaces and .,'()&+-, at most 64 characters)",
                  {"type": "string", "maxLength": 64})


def _owner_query() -> dict:
    return _query("owner", "Administrators: whose images (an account id, or `*` for every owner's; a label search "
                           "or count names one); others may name only themselves (403 otherwise)", {"type": "string"})


def _images_paths() -> dict:
    wait = _query("wait", f"Seconds to wait for the results (0 to {api.MAX_WAIT_S}); 200 when all are final "
                          "within it, 202 otherwise, and at once when the caller already holds its share of "
                          "waiting requests", {"type": "number", "minimum": 0, "maximum": api.MAX_WAIT_S})
    image_id = _path("image_id", "The image's id", {"type": "string", "pattern": IMAGE_ID_PATTERN})
    owner = _owner_query()
    return {
        "/api/images": {
            "post": {
                "operationId": "submitImages", "tags": ["images"], "summary": "Submit images for recognition",
                "description": "Each JPEG or PNG becomes a job; the answer lists them QUEUED (202) or, with "
                               "`wait`, final (200). All files are checked before any is queued.",
                "parameters": [_album_query(), _query("filename", "Name of a raw-body image", {"type": "string"}),
                               wait, *openapi_labels.filter_params(), *openapi_features.upload_params(),
                               _query("callback_url", "An HTTPS URL to POST each image's final result to, "
                                                      "signed with your callback secret (create it first)",
                                      {"type": "string", "maxLength": 2000})],
                "requestBody": _upload_body(),
                "responses": {
                    "200": {"description": "Every image is final within `wait`", "content": _json(_ref("Images"))},
                    "202": {"description": "Accepted and queued", "content": _json(_ref("Images"))},
                    "400": _response("BadRequest"), "415": _response("UnsupportedType"), **_COMMON}},
            "get": {
                "operationId": "listImages", "tags": ["images"], "summary": "List images, newest first",
                "parameters": [
                    _album_query(), owner,
                    _query("status", "Only images in this status (any case)", {"type": "string", "enum": list(STATUSES)}),
                    _query("limit", f"Page size, 1 to {api.MAX_PAGE}", {"type": "integer", "minimum": 1,
                                                                       "maximum": api.MAX_PAGE,
                                                                       "default": api.DEFAULT_PAGE}),
                    _query("cursor", "`next_cursor` of the previous page of the same listing (opaque and signed: a "
                           "changed or foreign one is refused 400 `BAD_CURSOR`)", {"type": "string"}),
                    *openapi_labels.search_params(), *openapi_features.search_params(),
                    *openapi_labels.filter_params()],
                "responses": {"200": {"description": "One page", "content": _json(_ref("ImagePage"))},
                              "400": _response("BadRequest"), "403": _response("Forbidden"), **_COMMON}},
        },
        "/api/images/{image_id}": {
            "parameters": [image_id],
            "get": {
                "operationId": "getImage", "tags": ["images"], "summary": "One image's status and result",
                "parameters": [_query("wait", f"Seconds to wait for the result to be final (0 to {api.MAX_WAIT_S})",
                                      {"type": "number", "minimum": 0, "maximum": api.MAX_WAIT_S}),
                               *openapi_labels.filter_params()],
                "responses": {"200": {"description": "The result (final, or as it stands when `wait` ran out or "
                                                     "when the caller already holds its share of waits)",
                                      "content": _json(_ref("Image"))},
                              "400": _response("BadRequest"), "404": _response("NotFound"), **_COMMON}},
            "delete": {
                "operationId": "deleteImage", "tags": ["images"],
                "summary": "Delete an image: its result, original, thumbnail, annotated copy and result JSON",
                "responses": {"204": {"description": "Deleted"}, "404": _response("NotFound"), **_COMMON}},
        },
        "/api/albums/{name}": {
            "parameters": [_path("name", "Album name", {"type": "string", "maxLength": 64})],
            "delete": {
                "operationId": "deleteAlbum", "tags": ["images"], "summary": "Delete an album and its photos",
                "description": "A 503 after part of the album was deleted says how many (`deleted`); send the "
                               "DELETE again to finish.",
                "parameters": [owner],
                "responses": {"200": {"description": "Deleted (an album with no photos: 0)",
                                      "content": _json(_ref("AlbumDeleted"))},
                              "400": _response("BadRequest"), "403": _response("Forbidden"), **_COMMON}},
        },
    }


def _webhook_paths() -> dict:
    hook_id = _path("hook_id", "The endpoint's id", {"type": "string", "pattern": "^wh_[0-9a-f]{16}$"})
    one = {"200": {"description": "The endpoint with its last deliveries", "content": _json(_ref("Webhook"))},
           "404": _response("NotFound"), **_COMMON}
    return {
        "/api/webhooks": {
            "get": {"operationId": "listWebhooks", "tags": ["webhooks"], "summary": "Your webhook endpoints",
                    "responses": {"200": {"description": "Every endpoint of yours", "content": _json(
                        {"type": "object", "required": ["webhooks"],
                         "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}}})}, **_COMMON}},
            "post": {"operationId": "createWebhook", "tags": ["webhooks"], "summary": "Register an endpoint",
                     "description": f"HTTPS only (plain http to loopback in local mode); never link-local or, unless "
                                    f"the operator allows it, private addresses; at most {MAX_ENDPOINTS} an account. "
                                    "The signing secret is in this answer only.",
                     "requestBody": {"required": True, "content": _json({
                         "type": "object", "required": ["url"], "properties": {
                             "url": {"type": "string", "maxLength": 2000},
                             "events": {"type": "array", "items": {"type": "string", "enum": list(EVENTS)},
                                        "minItems": 1}}})},
                     "responses": {"201": {"description": "Registered", "content": _json({
                         "type": "object", "required": ["webhook", "secret"],
                         "properties": {"webhook": _ref("Webhook"), "secret": {"type": "string"}}})},
                                   "400": _response("BadRequest"), **_COMMON}}},
        "/api/webhooks/{hook_id}": {
            "parameters": [hook_id],
            "get": {"operationId": "getWebhook", "tags": ["webhooks"], "summary": "One endpoint and its delivery log",
                    "responses": one},
            "delete": {"operationId": "deleteWebhook", "tags": ["webhooks"], "summary": "Remove an endpoint",
                       "responses": {"204": {"description": "Removed"}, "404": _response("NotFound"), **_COMMON}}},
        "/api/webhooks/{hook_id}/enable": {
            "parameters": [hook_id],
            "post": {"operationId": "enableWebhook", "tags": ["webhooks"], "summary": "Enable a disabled endpoint",
                     "responses": one}},
        "/api/webhooks/callback-secret": {"post": {
            "operationId": "newCallbackSecret", "tags": ["webhooks"],
            "summary": "A new secret for per-request callbacks (`callback_url` on upload); the old one stops at once",
            "responses": {"201": {"description": "The secret, shown once", "content": _json({
                "type": "object", "required": ["secret"], "properties": {"secret": {"type": "string"}}})},
                **_COMMON}}},
    }


def _ops_paths() -> dict:
    window = _query("window", f"Window length: seconds or a number with s, m, h or d, from "
                              f"{opsdata.MIN_WINDOW_S} s to {opsdata.MAX_WINDOW_S // 3600} h (empty: 15m)",
                    {"type": "string", "pattern": r"^\s*([0-9]{1,9}(\.[0-9]{1,6})?\s*[smhdSMHD]?\s*)?$"})
    admin = "Administrators only."
    return {
        "/api/ops/summary": {"get": {
            "operationId": "opsSummary", "tags": ["operations"], "summary": "Fleet, queue and throughput now",
            "description": admin,
            "responses": {"200": {"description": "The summary", "content": _json(_ref("OpsSummary"))}, **_ADMIN}}},
        "/api/ops/timeseries": {"get": {
            "operationId": "opsTimeseries", "tags": ["operations"], "summary": "Fleet and queue figures over a window",
            "description": admin, "parameters": [window],
            "responses": {"200": {"description": "Series on whole steps", "content": _json(_ref("OpsTimeseries"))},
                          "400": _response("BadRequest"), **_ADMIN}}},
        "/metrics": {"get": {
            "operationId": "metrics", "tags": ["operations"], "summary": "Prometheus metrics",
            "description": f"{admin} Prometheus scrapes it with a bearer key.",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}, **_ADMIN}}},
        "/healthz": {"get": {
            "operationId": "health", "tags": ["operations"], "security": _OPEN,
            "summary": "Whether every resource is reachable (the load balancer's check)",
            "description": "Anonymous callers learn only healthy or not; administrators also get `problems`. A "
                           "verdict is reused for a second or two, so a flood of checks is not a flood of AWS calls.",
            "responses": {"200": {"description": "Healthy", "content": _json(_ref("Health"))},
                          "429": _response("RateLimited"),
                          "503": {"description": "A resource is unreachable or too slow", "content": _json(_ref("Health")),
                                  "headers": _retry_after()}}}},
        **openapi_ops.paths(_ADMIN, _response("BadRequest")),
    }


def _course_paths() -> dict:
    part = {"type": "string", "format": "binary"}
    return {"/": {"post": {
        "operationId": "classify", "tags": ["course"], "security": _OPEN,
        "summary": "CSE546-compatible: one image in, `name:label` out",
        "description": f"Waits up to {course_endpoint.WAIT_S} s for the result. Open to anonymous callers unless "
                       "SIGHTFLEET_OPEN_COURSE_ENDPOINT=0; their images belong to a built-in anonymous owner and "
                       "expire. A caller that already holds its share of waiting requests gets 202 at once.",
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "properties": {"myfile": part, "inputFile": part, "album": {"type": "string"}}}}}},
        "responses": {
            "200": {"description": "`<file name without extension>:<top label>`",
                    "content": {"text/plain": {"schema": {"type": "string", "pattern": "^[^\n]*:[^\n]*$"}}}},
            "202": {"description": "Queued, not waited for: the caller holds its share of waiting requests; poll "
                                   "`status_url` (also in `Location`)", "content": _json(_ref("Image")),
                    "headers": {"Location": {"description": "The image's status URL", "required": True,
                                             "schema": {"type": "string"}}}},
            "400": _response("BadRequest"), "415": _response("UnsupportedType"),
            "422": _error_response("Recognition failed; `error` says why (e.g. CORRUPT_IMAGE)."),
            "504": _error_response("No result in time (TIMEOUT); poll the image's status URL given in the message."),
            **_COMMON}}}}


def _self_path() -> dict:
    return {"/api/openapi.json": {"get": {
        "operationId": "openapi", "tags": ["operations"], "security": [{}], "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})},
                      "429": _response("RateLimited")}}}}


def _vocabulary_path() -> dict:
    names = {"type": "array", "items": {"type": "string"}}
    label = {"type": "object", "required": ["Name", "Parents", "Ancestors", "Aliases", "Categories", "Threshold"],
             "properties": {"Name": {"type": "string"}, "Parents": names, "Ancestors": names, "Aliases": names,
                            "Categories": names, "Threshold": {"type": "number", "minimum": 0, "maximum": 100},
                            "Priority": {"type": "integer", "description": "Below 0: never returned"}}}
    return {"/api/vocabulary": {"get": {
        "operationId": "vocabulary", "tags": ["labels"], "security": [{}],
        "summary": "Every label the service can return, with its hierarchy, aliases, categories and threshold",
        "description": "Public. Parents are a label's direct parents, Ancestors all of them, nearest first. "
                       "The ETag is the vocabulary's version (the end of a result's label_model_version).",
        "responses": {"200": {"description": "The vocabulary", "content": _json({
            "type": "object", "required": ["version", "categories", "labels"],
            "properties": {"version": {"type": "string"}, "categories": names,
                           "labels": {"type": "array", "items": label}}})},
                      "304": {"description": "Not modified (If-None-Match matched the version)"},
                      "429": _response("RateLimited")}}}}


def build_document() -> dict:
    """The whole OpenAPI 3.1 document for this app's settings."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Sightfleet API", "version": API_VERSION,
            "summary": "Image recognition as a service: submit photos, read labels, metadata and status.",
            "description": "Programs authenticate with `Authorization: Bearer <API key>` (keys are made on the "
                           "/keys page or with `python -m web_tier.accounts`); people's browsers use the signed-in "
                           "session, and their state-changing requests need the CSRF token. Every error is JSON "
                           "`{\"error\": {\"code\", \"message\"}}`, the HTTP server's own refusals (a request "
                           "line over 4,094 bytes: 414; headers too large: 431) included.",
            "license": {"name": "MIT", "identifier": "MIT"}},
        "tags": [{"name": "images", "description": "Your photos and their results"},
                 {"name": "labels", "description": "Your labels and their counts; the labels the service can return"},
                 {"name": "operations", "description": "Fleet state, metrics, health and reprocessing"},
                 {"name": "course", "description": "The CSE546 course's endpoint"},
                 {"name": "webhooks", "description": "Endpoints that receive your photos' events, signed"}],
        "security": [{"bearerAuth": []}],
        "paths": {**_images_paths(), **_webhook_paths(), **_vocabulary_path(), **_ops_paths(), **_course_paths(),
                  **_self_path(), **openapi_labels.paths(_album_query(), _owner_query(), _COMMON, _ADMIN, _response),
                  **openapi_features.paths(_COMMON, _ADMIN, _response)},
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "An API key, shown once when it is made"}},
            "schemas": {**_schemas(), **openapi_ops.schemas()}, "responses": _responses()},
    }


def document() -> dict:
    """This app's document, built on first use."""
    shared = services()
    if shared.openapi is None:
        shared.openapi = build_document()
    return shared.openapi


@lru_cache(maxsize=1)
def swagger_ui() -> tuple[Path, str]:
    """The folder of Swagger UI's files inside the flask-swagger-ui wheel, and that package's version."""
    folder, version = package_folder("flask_swagger_ui", SWAGGER_UI_PACKAGE)
    return folder / "dist", version


@bp.get("/api/openapi.json")
def openapi_json():
    return jsonify(document())


@bp.get("/api/docs")
def docs_page():
    version = swagger_ui()[1]
    return render_template("api_docs.html", version=version, spec_url=url_for("openapi.openapi_json"),
                           asset=lambda name: url_for("openapi.docs_asset", version=version, name=name))


@bp.get("/api/docs/<version>/<name>")
def docs_asset(version: str, name: str):
    folder, current = swagger_ui()
    if version != current:
        return errors.error_response(404, "NOT_FOUND", f"Swagger UI {current} is served here, not {version}")
    return send_from_directory(folder, name, max_age=ASSET_MAX_AGE_S)


def install(app: Flask) -> None:
    """Serve the document and the API page."""
    app.register_blueprint(bp)
