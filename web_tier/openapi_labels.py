"""The OpenAPI parts of labels: the Rekognition-style filter parameters, label search, counts and reprocessing."""
from __future__ import annotations

from sightfleet.labelfilters import LIST_PARAMS, MAX_FILTER_NAMES, MAX_MAX_LABELS, MAX_NAME_CHARS
from web_tier import reprocess
from web_tier.query import MAX_LABEL_CHARS


def _query(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_LISTS = {
    "LabelInclusionFilters": "only these labels (names or aliases, any case)",
    "LabelExclusionFilters": "never these labels",
    "LabelCategoryInclusionFilters": "only labels in these categories",
    "LabelCategoryExclusionFilters": "never labels in these categories",
}
assert set(_LISTS) == set(LIST_PARAMS)


def filter_params() -> list[dict]:
    """MinConfidence, MaxLabels and the four lists, as DetectLabels takes them; on upload, read and listing."""
    listed = {"type": "array", "maxItems": MAX_FILTER_NAMES, "items": {"type": "string", "maxLength": MAX_NAME_CHARS}}
    return [
        _query("MinConfidence", "Only labels (and boxes) at least this confident, 0-100 (default: the service's "
                                "display threshold, or the upload's)", {"type": "number", "minimum": 0, "maximum": 100}),
        _query("MaxLabels", f"At most this many labels, strongest first (0-{MAX_MAX_LABELS})",
               {"type": "integer", "minimum": 0, "maximum": MAX_MAX_LABELS}),
        *({**_query(name, f"{what}; repeat the parameter or separate with commas. Inclusion filters keep a label "
                          "named by either list; exclusions then take out what they name", listed),
           "style": "form", "explode": True} for name, what in _LISTS.items()),
    ]


def search_params() -> list[dict]:
    """The listing's label search: `label`; its confidence floor is MinConfidence (in filter_params)."""
    return [_query("label", "Only images carrying this label or one below it (a canonical name or alias, any "
                            "case: `Animal` finds cats and dogs); one owner's, paged with `cursor`",
                   {"type": "string", "maxLength": MAX_LABEL_CHARS})]


def schemas() -> dict:
    text = {"type": "string"}
    count = {"type": "integer", "minimum": 0}
    return {
        "LabelCounts": {
            "type": "object", "required": ["owner", "album", "labels"],
            "properties": {"owner": text, "album": {"oneOf": [text, {"type": "null"}]},
                           "labels": {"type": "array", "items": {
                               "type": "object", "required": ["name", "count", "search_url"],
                               "properties": {"name": text, "count": count, "search_url": text}}}}},
        "ReprocessRun": {
            "type": "object", "required": ["run", "seen", "requeued", "skipped", "done", "next_cursor"],
            "properties": {"run": text, "owner": {"oneOf": [text, {"type": "null"}]},
                           "album": {"oneOf": [text, {"type": "null"}]},
                           "older_than": {"oneOf": [text, {"type": "null"}]},
                           "seen": count, "requeued": count, "skipped": count, "done": {"type": "boolean"},
                           "started_at": text, "updated_at": text,
                           "next_cursor": {"oneOf": [text, {"type": "null"}],
                                           "description": "Opaque and signed: pass it as `cursor` to go on (null: the "
                                                          "selection is done); a changed one is refused 400 "
                                                          "`BAD_CURSOR`"}}},
    }


def paths(album_query: dict, owner_query: dict, common: dict, admin: dict, response) -> dict:
    """/api/labels and /api/admin/reprocess (the image routes take filter_params and search_params)."""
    run = {"$ref": "#/components/schemas/ReprocessRun"}
    return {
        "/api/labels": {"get": {
            "operationId": "listLabels", "tags": ["labels"], "summary": "Your labels with counts, most frequent first",
            "description": "One owner's (administrators: `owner`), or one album's, from maintained counts.",
            "parameters": [album_query, owner_query],
            "responses": {"200": {"description": "The labels", "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/LabelCounts"}}}},
                "400": response("BadRequest"), "403": response("Forbidden"), **common}}},
        "/api/admin/reprocess": {
            "post": {
                "operationId": "reprocess", "tags": ["operations"],
                "summary": "Run stored photos through the fleet again, one page per request",
                "description": f"Administrators only. Requeues up to `limit` ({reprocess.MAX_PAGE} at most) finished "
                               "photos of the selection; without `cursor`, an unfinished run of the same selection "
                               "goes on where it stopped.",
                "parameters": [
                    _query("owner", "One owner's photos (default: every owner's)", {"type": "string"}), album_query,
                    _query("older_than_version", "Only photos whose label_model_version is not this one (the current)",
                           {"type": "string", "maxLength": reprocess.MAX_VERSION_CHARS}),
                    _query("limit", f"Photos per request, 1 to {reprocess.MAX_PAGE}",
                           {"type": "integer", "minimum": 1, "maximum": reprocess.MAX_PAGE}),
                    _query("cursor", "`next_cursor` of the previous answer", {"type": "string"})],
                "responses": {"200": {"description": "The run's progress",
                                      "content": {"application/json": {"schema": run}}},
                              "400": response("BadRequest"), **admin}},
            "get": {
                "operationId": "reprocessRuns", "tags": ["operations"], "summary": "Recent reprocessing runs",
                "description": "Administrators only.",
                "responses": {"200": {"description": "Newest first", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["runs"],
                    "properties": {"runs": {"type": "array", "items": run}}}}}}, **admin}}},
    }
