"""The OpenAPI parts of "more than labels": the `features` an upload asks for, the answers each adds to an
image (in Rekognition's shapes), the searches by word, faces, colour and hold, each account's default
features, and moderation's review list and release (web_tier/features.py, web_tier/ops_review.py)."""
from __future__ import annotations

from sightfleet import findterms
from sightfleet.features import FEATURES, MAX_FEATURES_CHARS, MODERATION_MODES
from web_tier import ops_review

COST = "What each costs per photo (CPU) is in docs/recognition.md."


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _nullable(schema: dict) -> dict:
    return {"oneOf": [schema, {"type": "null"}]}


FEATURES_DESCRIPTION = (f"What the workers find in each photo, comma-separated or repeated: {', '.join(FEATURES)} "
                        "(default: your account's, else the service's). `moderation` is added whenever the service "
                        "moderates. An unknown name is refused (400 BAD_FEATURES) before any photo is read. " + COST)


def upload_params() -> list[dict]:
    """The upload's `features` query parameter (it may also be a multipart form field)."""
    return [_query("features", FEATURES_DESCRIPTION, {"type": "string", "maxLength": MAX_FEATURES_CHARS})]


def upload_form_field() -> dict:
    """The multipart form's `features` field."""
    return {"features": {"type": "array", "items": {"type": "string", "enum": list(FEATURES)},
                         "description": "As the `features` query parameter (the query string wins)"}}


def search_params() -> list[dict]:
    """The listing's searches beside `label` (one at a time; each is one owner's, from the index)."""
    return [
        _query("text", "Only photos in which the workers read this word (case-insensitive, punctuation at its "
                       f"ends ignored, read with at least {findterms.MIN_WORD_CONFIDENCE:g}% confidence)",
               {"type": "string", "maxLength": findterms.MAX_WORD_CHARS}),
        _query("faces", f"`true`: photos with any face; a number (1-{findterms.MAX_FACES}): with exactly that many",
               {"type": "string", "pattern": r"^(true|[0-9]{1,3})$"}),
        _query("color", "Only photos with this simplified colour (`SimplifiedColor`, e.g. red) among their "
                        "dominant colours", {"type": "string", "pattern": "^[A-Za-z]{1,20}$"}),
        _query("held", "`true`: your photos that moderation holds for review (in no other listing or search)",
               {"type": "string", "enum": ["true"]}),
    ]


def image_properties() -> dict:
    """The fields a result gains, as the Image schema lists them."""
    number, text = {"type": "number"}, {"type": "string"}
    box = {"type": "object", "properties": {k: number for k in ("Width", "Height", "Left", "Top")}}
    return {
        "features": {"type": "array", "items": {"type": "string", "enum": list(FEATURES)},
                     "description": "What the job asked the workers to find"},
        "text_detections": {"type": "array", "description": "Rekognition DetectText's TextDetections: LINEs and "
                            "their WORDs (ParentId)", "items": {"type": "object", "properties": {
                                "DetectedText": text, "Type": {"type": "string", "enum": ["LINE", "WORD"]},
                                "Id": {"type": "integer"}, "ParentId": {"type": "integer"}, "Confidence": number,
                                "Geometry": {"type": "object"}}}},
        "face_details": {"type": "array", "description": "Rekognition DetectFaces' FaceDetails: where each face "
                         "is, never who", "items": {"type": "object", "properties": {
                             "BoundingBox": box, "Confidence": number, "Landmarks": {"type": "array"},
                             "Pose": {"type": "object"}}}},
        "moderation_labels": {"type": "array", "description": "Rekognition DetectModerationLabels' "
                              "ModerationLabels", "items": {"type": "object", "properties": {
                                  "Name": text, "ParentName": text, "Confidence": number,
                                  "TaxonomyLevel": {"type": "integer"}}}},
        "image_properties": _nullable({"type": "object", "description": "Rekognition's ImageProperties: Quality "
                                       "(Brightness, Sharpness, Contrast) and DominantColors (HexCode, "
                                       "SimplifiedColor, PixelPercent...)"}),
        "review": _nullable({"type": "object", "description": "Moderation's verdict: `held` photos are in no "
                             "listing or search but their owner's `held=true` and the admins' review list until "
                             "released", "properties": {
                                 "flagged": {"type": "boolean"}, "held": {"type": "boolean"},
                                 "released_by": text, "released_at": text}}),
        "model_versions": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "Feature -> the model that answered"},
    }


def schemas() -> dict:
    names = {"type": "array", "items": {"type": "string", "enum": list(FEATURES)}}
    text = {"type": "string"}
    return {
        "AccountFeatures": {
            "type": "object", "required": ["account", "default_features", "stack_features", "moderation",
                                           "effective_features"],
            "properties": {"account": text, "default_features": _nullable(names), "stack_features": names,
                           "moderation": {"type": "string", "enum": list(MODERATION_MODES)},
                           "effective_features": names}},
        "ReviewList": {
            "type": "object", "required": ["waiting", "images", "next_cursor"],
            "properties": {"waiting": {"type": "integer", "minimum": 0}, "next_cursor": _nullable(text),
                           "images": {"type": "array", "items": {"type": "object", "properties": {
                               **{k: _nullable(text) for k in ("id", "owner", "album", "filename", "submitted_at",
                                                               "page_url", "thumbnail_url")},
                               "moderation_labels": {"type": "array"}, "review": _nullable({"type": "object"})}}}}},
        "Released": {
            "type": "object", "required": ["image_id", "review", "page_url"],
            "properties": {"image_id": text, "page_url": text, "review": {"type": "object"}}},
    }


def paths(common: dict, admin: dict, response) -> dict:
    """/api/account/features and the review routes; response: a shared answer by name."""
    def json_of(name: str) -> dict:
        return {"application/json": {"schema": _ref(name)}}
    conflict = {"description": "Not held (NOT_HELD), or changed meanwhile (CHANGED)", "content": json_of("Error")}
    return {
        "/api/account/features": {
            "get": {"operationId": "getAccountFeatures", "tags": ["images"],
                    "summary": "Your default features, and what an upload without `features` runs",
                    "parameters": [_query("account", "Administrators: another account's (by name)",
                                          {"type": "string", "maxLength": 64})],
                    "responses": {"200": {"description": "The settings", "content": json_of("AccountFeatures")},
                                  "403": response("Forbidden"), "404": response("NotFound"), **common}},
            "put": {"operationId": "putAccountFeatures", "tags": ["images"], "summary": "Set your default features",
                    "description": "`features` as a JSON body ({\"features\": [...] | \"a,b\" | null}), a form "
                                   "field or a query parameter; null or empty: back to the service's default. " + COST,
                    "parameters": [_query("features", FEATURES_DESCRIPTION, {"type": "string",
                                                                             "maxLength": MAX_FEATURES_CHARS})],
                    "requestBody": {"required": False, "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"features": _nullable({"oneOf": [
                            {"type": "array", "items": {"type": "string", "enum": list(FEATURES)}},
                            {"type": "string", "maxLength": MAX_FEATURES_CHARS}]})}}}}},
                    "responses": {"200": {"description": "Saved", "content": json_of("AccountFeatures")},
                                  "400": response("BadRequest"), **common}}},
        "/api/ops/review": {"get": {
            "operationId": "reviewList", "tags": ["operations"], "summary": "Photos moderation holds for review",
            "description": "Administrators only. Every owner's held photos, newest first, with their moderation "
                           "labels and how many wait in all.",
            "parameters": [_query("limit", f"Page size, 1 to {ops_review.MAX_PAGE}",
                                  {"type": "integer", "minimum": 1, "maximum": ops_review.MAX_PAGE}),
                           _query("cursor", "`next_cursor` of the previous page", {"type": "string"})],
            "responses": {"200": {"description": "One page", "content": json_of("ReviewList")},
                          "400": response("BadRequest"), **admin}}},
        "/api/ops/review/release": {"post": {
            "operationId": "releaseHeld", "tags": ["operations"], "summary": "Release a held photo",
            "description": "Administrators only; audited. The photo joins its owner's galleries and searches.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["image_id"], "additionalProperties": False,
                "properties": {"image_id": {"type": "string"}}}}}},
            "responses": {"200": {"description": "Released", "content": json_of("Released")},
                          "400": response("BadRequest"), "404": response("NotFound"), "409": conflict, **admin}}},
    }
