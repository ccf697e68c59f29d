"""The job message and result document that the tiers exchange (versioned JSON)."""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any, TypedDict, cast

from sightfleet.errors import InvalidJob
from sightfleet.features import parse_features
from sightfleet.labelfilters import LabelFilters

JOB_VERSION = 1
QUEUED, PROCESSING, SUCCEEDED, FAILED = "QUEUED", "PROCESSING", "SUCCEEDED", "FAILED"
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED})
STATUSES = (QUEUED, PROCESSING, SUCCEEDED, FAILED)
# A deleted image's row: a tombstone that refuses every later worker write (see tombstone()); never listed.
DELETED = "DELETED"
# Keep tombstones longer than any job message can live (the dead-letter queue keeps them 14 days).
TOMBSTONE_TTL_S = 15 * 86400
DEFAULT_ALBUM = "default"
_ALBUM_RE = re.compile(r"^[\w .,'()&+-]{1,64}$", re.UNICODE)
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
CONTENT_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}
# The owner of records from before owners existed, and of course-endpoint uploads made without credentials
# (sightfleet.identity re-exports it); only admins browse it.
ANONYMOUS_OWNER = "anonymous"
# Owners are account ids: they become one S3 key segment and one index key, so no "/" and no leading dot.
_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def iso(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds: the project's timestamps (they sort by time)."""
    stamp = datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def utc_now() -> str:
    """Current time as ISO 8601 UTC with milliseconds."""
    return iso(time.time())


def parse_time(value: str) -> datetime:
    """Parse a timestamp written by utc_now."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def epoch(stamp: str | None) -> float | None:
    """A timestamp written by utc_now as epoch seconds; None when absent or unreadable."""
    try:
        return parse_time(stamp).timestamp() if stamp else None
    except (AttributeError, ValueError):  # not a string, or not a timestamp
        return None


def new_image_id() -> str:
    """A fresh, unguessable image id (also the only thing S3 keys are made from)."""
    return uuid.uuid4().hex


def is_image_id(value: object) -> bool:
    """True when value has the shape of an id from new_image_id."""
    return isinstance(value, str) and bool(_ID_RE.match(value))


def clean_album(name: str | None) -> str:
    """Validate an album name typed by a user; raise ValueError with a readable reason."""
    name = (name or "").strip() or DEFAULT_ALBUM
    if not _ALBUM_RE.match(name):
        raise ValueError("album names are 1-64 letters, digits, spaces or .,'()&+-_ characters")
    return name


def is_owner(value: object) -> bool:
    """True when value can be an owner: an account id that is safe as one S3 key segment."""
    return isinstance(value, str) and bool(_OWNER_RE.match(value)) and ".." not in value


def owner_of(doc: Mapping[str, Any]) -> str:
    """The owner of a stored result or job document; ANONYMOUS_OWNER for one written before owners existed."""
    return doc.get("owner") or ANONYMOUS_OWNER


# Keys carry the owner as their second segment, so one owner's objects can be listed, exported or
# scoped by prefix. The IAM roles are not scoped by it: the web tier serves every owner and the
# worker processes every owner's jobs, so each needs every prefix (per-owner scoping would only help
# callers holding per-owner credentials, which this service never hands out).
def input_key(owner: str, image_id: str, content_type: str) -> str:
    """Input-bucket key of an original; never derived from the user's file name."""
    return f"originals/{owner}/{image_id}.{CONTENT_EXTENSIONS.get(content_type, 'bin')}"


def foreign_input(job: "Job") -> str | None:
    """Why a pointer job's key is not the one its owner and id imply (a forged or misrouted job); None if it is."""
    expected = input_key(job.owner, job.id, job.content_type)
    if job.is_inline or job.key == expected:
        return None
    return f"the job points at {clip(repr(job.key), 80)}, not at {expected}, the original of its owner and id"


def output_keys(owner: str, image_id: str) -> dict[str, str]:
    """Output-bucket keys of one image's artefacts (the thumbnail's extension varies, see thumbnail_key)."""
    return {
        "thumbnail": f"thumbnails/{owner}/{image_id}",
        "annotated": f"annotated/{owner}/{image_id}.jpg",
        "result": f"results/{owner}/{image_id}.json",
    }


def thumbnail_key(owner: str, image_id: str, content_type: str | None) -> str:
    """Output-bucket key of a thumbnail stored as content_type (JPEG unless it is a known other type)."""
    return f"{output_keys(owner, image_id)['thumbnail']}.{CONTENT_EXTENSIONS.get(content_type or '', 'jpg')}"


def artefact_keys(doc: dict) -> tuple[list[str], list[str]]:
    """(input-bucket keys, output-bucket keys) an image may have stored: what its document names, and
    everything the key layout could have given it (a worker may have written outputs its row never recorded).
    """
    owner, image_id = owner_of(doc), doc["id"]
    laid_out = output_keys(owner, image_id)
    outputs = [doc.get(k) for k in ("thumbnail_key", "annotated_key", "result_key")]
    outputs += [*(thumbnail_key(owner, image_id, t) for t in CONTENT_EXTENSIONS), laid_out["annotated"],
                laid_out["result"]]
    inputs = [doc.get("input_key"), *(input_key(owner, image_id, t) for t in CONTENT_EXTENSIONS)]
    # A tombstone lists them already (a retried delete or a late worker reads them there).
    inputs += doc.get("input_keys") or []
    outputs += doc.get("output_keys") or []
    return _present_once(inputs), _present_once(outputs)


def _present_once(keys: list) -> list[str]:
    return list(dict.fromkeys(k for k in keys if k))


def tombstone(doc: dict, now_s: float | None = None) -> dict:
    """What stays of a deleted image's row: its id, owner, where its artefacts were, and when it expires.

    No name, album, labels or metadata (GPS) survive; the keys let a retried delete finish the job.
    """
    now_s = time.time() if now_s is None else now_s
    inputs, outputs = artefact_keys(doc)
    return {"id": doc["id"], "owner": owner_of(doc), "status": DELETED, "deleted_at": iso(now_s),
            "updated_at": iso(now_s), "expires_at": int(now_s + TOMBSTONE_TTL_S),
            "input_keys": inputs, "output_keys": outputs}


def is_deleted(doc: dict) -> bool:
    """True for the tombstone of a deleted image."""
    return doc.get("status") == DELETED


# A job body is an envelope around at most one inline image (the queue's limit is 1 MiB);
# anything longer is refused before it is parsed.
MAX_JOB_BODY_CHARS = 1_500_000
_MAX_FILENAME_CHARS = 1024
_MAX_KEY_CHARS = 1024
_MAX_SIZE = 2**40
# Each field's JSON type; bool is not an int here (type() is compared, not isinstance()).
_JOB_FIELDS = {"id": str, "album": str, "filename": str, "content_type": str, "submitted_at": str, "size": int}
# Optional: absent in a job from before owners existed (it belongs to ANONYMOUS_OWNER), and the location.
# `filters`: the upload's label filters (sightfleet/labelfilters.py), absent when none were given; a worker
# from before them ignores the field and stores the labels unfiltered (reads still apply their own).
# `features`: what the worker runs (sightfleet/features.py); absent in a job from before them: the worker's
# own default (Settings.features, with moderation when the stack moderates).
# `release`: an admin's release of the photo ({"released_by", "released_at"}), carried by a reprocessing job so
# that moderation holding the same photo again does not undo the review.
_OPTIONAL_FIELDS = {"owner": str, "inline_b64": str, "bucket": str, "key": str, "filters": dict, "features": list,
                    "release": dict}


def clip(text: object, limit: int = 120) -> str:
    """At most limit characters of text, for log lines and error messages quoting what a user sent."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


@dataclass(frozen=True)
class Job:
    """One photo to recognise: who sent it and where its bytes are."""

    id: str
    album: str
    filename: str
    content_type: str
    submitted_at: str
    size: int
    inline_b64: str | None = None
    bucket: str | None = None
    key: str | None = None
    owner: str = ANONYMOUS_OWNER
    filters: dict | None = None
    features: tuple[str, ...] | None = None
    release: dict | None = None

    @property
    def is_inline(self) -> bool:
        return self.inline_b64 is not None

    def inline_bytes(self) -> bytes:
        """The inline image; InvalidJob when the payload is not strict base64."""
        try:
            return base64.b64decode(self.inline_b64 or "", validate=True)
        except ValueError as exc:  # binascii.Error
            raise InvalidJob(f"job {self.id}: the inline image is not valid base64 ({exc})") from exc

    def to_message(self) -> str:
        """Serialise as the queue message body."""
        body = {"v": JOB_VERSION, **asdict(self)}
        return json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_message(cls, body: object) -> "Job":
        """Parse a queue message body; InvalidJob for anything that is not a job this version understands.

        Unknown fields are ignored (a newer producer may add optional ones); every known field
        must have its JSON type. Nothing of the body reaches an error message unclipped.
        """
        doc = _json_object(body)
        version = doc.get("v")
        if type(version) is not int or version != JOB_VERSION:
            raise InvalidJob(f"unsupported job version {clip(repr(version), 40)}")
        fields = {name: _typed(doc, name, kind, required=True) for name, kind in _JOB_FIELDS.items()}
        fields.update({name: _typed(doc, name, kind) for name, kind in _OPTIONAL_FIELDS.items()})
        fields["owner"] = fields["owner"] or ANONYMOUS_OWNER
        if fields["features"] is not None:
            fields["features"] = tuple(fields["features"])
        job = cls(**fields)
        job._validate()
        return job

    def _validate(self) -> None:
        if not is_image_id(self.id):
            raise InvalidJob(f"job id {clip(repr(self.id), 60)} is not an image id")
        problem = _job_problem(self)
        if problem:
            raise InvalidJob(f"job {self.id}: {problem}")


def _json_object(body: object) -> dict:
    """The body parsed as a JSON object; InvalidJob for anything else, however deep or long."""
    if not isinstance(body, str):
        raise InvalidJob(f"a job body is text, not {type(body).__name__}")
    if len(body) > MAX_JOB_BODY_CHARS:
        raise InvalidJob(f"a job body of {len(body)} characters is longer than any job")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser goes
        raise InvalidJob(f"not JSON: {clip(exc)}") from exc
    if not isinstance(doc, dict):
        raise InvalidJob(f"a job is a JSON object, not {type(doc).__name__}")
    return doc


def _typed(doc: dict, name: str, kind: type, required: bool = False):
    value = doc.get(name)
    if value is None and not required:
        return None
    if type(value) is not kind:
        raise InvalidJob(f"job field {name!r} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _job_problem(job: Job) -> str | None:
    """Why a well-typed job cannot be processed; None when it can."""
    if not is_owner(job.owner):
        return f"owner {clip(repr(job.owner), 60)} is not an account id"
    try:
        if clean_album(job.album) != job.album:   # "" or padded: the web tier never sends those
            raise ValueError(job.album)
    except ValueError:
        return f"album {clip(repr(job.album), 80)} is not an album name"
    if len(job.filename) > _MAX_FILENAME_CHARS:
        return f"file name of {len(job.filename)} characters"
    if job.content_type not in CONTENT_EXTENSIONS:
        return f"content type {clip(repr(job.content_type), 60)} is not accepted"
    if epoch(job.submitted_at) is None:
        return f"submitted_at {clip(repr(job.submitted_at), 60)} is not a timestamp"
    if not 0 <= job.size <= _MAX_SIZE:
        return f"size {job.size} is out of range"
    inline, pointer = job.inline_b64 is not None, job.bucket is not None or job.key is not None
    if inline == pointer:
        return "a job carries either an inline image or a bucket and key, and exactly one of them"
    if pointer and not (job.bucket and job.key and len(job.key) <= _MAX_KEY_CHARS):
        return "a pointer job needs a bucket and a key of at most 1024 characters"
    try:
        LabelFilters.from_dict(job.filters)
    except ValueError as exc:
        return f"label filters: {clip(exc, 200)}"
    if job.release is not None and not (set(job.release) == {"released_by", "released_at"}
                                        and all(isinstance(v, str) for v in job.release.values())):
        return "release must be {released_by, released_at}, both strings"
    return _features_problem(job.features)


def _features_problem(features: tuple | None) -> str | None:
    """Why a job's features are not a list this version runs as given; None when they are (or are absent)."""
    if features is None:
        return None
    if not all(isinstance(f, str) for f in features):
        return "features must be a list of strings"
    try:
        if parse_features(features) != features:
            return "features must be distinct and in the order of sightfleet.features.FEATURES"
    except ValueError as exc:
        return f"features: {clip(exc, 200)}"
    return None


def job_id_of(body: object) -> str | None:
    """The image id a message body names, even when it is no valid job; None when it names none."""
    try:
        doc = _json_object(body)
    except InvalidJob:
        return None
    value = doc.get("id")
    return value if isinstance(value, str) and is_image_id(value) else None


def job_owner_of(body: object) -> object:
    """The owner a message body names (ANONYMOUS_OWNER when it names none), even when it is no valid job."""
    try:
        doc = _json_object(body)
    except InvalidJob:
        return None
    return doc.get("owner") or ANONYMOUS_OWNER


class ResultDoc(TypedDict, total=False):
    """A result row as stores keep it and the API serves it: Result.to_dict()'s fields, or a tombstone's."""

    id: str
    album: str
    filename: str
    content_type: str
    size: int
    submitted_at: str
    input_key: str
    owner: str
    status: str
    labels: list
    top_label: str | None
    label_model_version: str | None
    metadata: dict
    error: dict | None
    updated_at: str | None
    started_at: str | None
    completed_at: str | None
    timings: dict
    instance_id: str | None
    thumbnail_key: str | None
    annotated_key: str | None
    result_key: str | None
    attempts: int
    label_filters: dict | None
    weaker_labels: list
    features: list
    text_detections: list
    face_details: list
    moderation_labels: list
    image_properties: dict | None
    review: dict | None
    model_versions: dict
    # A tombstone's own (see tombstone()).
    deleted_at: str
    expires_at: int
    input_keys: list[str]
    output_keys: list[str]


@dataclass(frozen=True)
class Result:
    """One image's result document as it moves QUEUED -> PROCESSING -> SUCCEEDED | FAILED.

    Stored and served as the dict of to_dict(); every change makes a new Result.
    """

    id: str
    album: str
    filename: str
    content_type: str
    size: int
    submitted_at: str
    input_key: str
    owner: str = ANONYMOUS_OWNER
    status: str = QUEUED
    labels: tuple = ()
    top_label: str | None = None
    label_model_version: str | None = None     # detector + classifier + vocabulary that made the labels
    metadata: dict = field(default_factory=dict)
    error: dict | None = None
    updated_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    timings: dict = field(default_factory=dict)
    instance_id: str | None = None
    thumbnail_key: str | None = None
    annotated_key: str | None = None
    result_key: str | None = None
    attempts: int = 0
    label_filters: dict | None = None   # the upload's label filters: what reads show unless they ask otherwise
    weaker_labels: tuple = ()   # below the vocabulary's thresholds, down to the floor: for reads lowering MinConfidence
    # What the job asked for (sightfleet/features.py) and each answer in Rekognition's shapes; () / None when
    # not asked. image_properties: ImageProperties (Quality, DominantColors); review: moderation's verdict,
    # {"flagged": bool, "held": bool, ...} (held: kept out of galleries and search until an admin releases it).
    features: tuple = ()
    text_detections: tuple = ()
    face_details: tuple = ()
    moderation_labels: tuple = ()
    image_properties: dict | None = None
    review: dict | None = None
    model_versions: dict = field(default_factory=dict)   # feature -> the model (and version) that answered

    @classmethod
    def queued(cls, job: Job) -> "Result":
        """The result as it stands when a job is accepted."""
        return cls(id=job.id, album=job.album, filename=job.filename, content_type=job.content_type,
                   size=job.size, submitted_at=job.submitted_at, updated_at=job.submitted_at, owner=job.owner,
                   label_filters=job.filters or None, features=tuple(job.features or ()),
                   review={"flagged": True, "held": False, **job.release} if job.release else None,
                   # Never the job's own key: a forged one would make deleting this image delete another's.
                   input_key=input_key(job.owner, job.id, job.content_type))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Result":
        """A stored result document (fields this version does not know are dropped)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["labels"] = tuple(values.get("labels") or ())
        for name in _TUPLE_FIELDS:
            values[name] = tuple(values.get(name) or ())
        values["owner"] = owner_of(values)
        return cls(**values)

    def to_dict(self) -> ResultDoc:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _TUPLE_FIELDS:
            doc[name] = list(getattr(self, name))
        return cast(ResultDoc, doc)

    def processing(self, instance_id: str, attempt: int) -> "Result":
        """Claimed by a worker for its attempt-th try."""
        now = utc_now()
        return replace(self, status=PROCESSING, started_at=now, updated_at=now, instance_id=instance_id,
                       attempts=attempt)

    def succeeded(self, outcome) -> "Result":
        """Final with the pipeline's outcome (labels, metadata, timings, which outputs it made)."""
        return replace(self._final(SUCCEEDED), labels=tuple(outcome.labels), top_label=outcome.top_label,
                       weaker_labels=tuple(outcome.weaker_labels),
                       text_detections=tuple(outcome.text_detections), face_details=tuple(outcome.face_details),
                       moderation_labels=tuple(outcome.moderation_labels),
                       image_properties=outcome.image_properties, review=_kept_release(self.review, outcome.review),
                       model_versions=dict(outcome.model_versions),
                       label_model_version=outcome.label_model_version, metadata=outcome.metadata,
                       timings=outcome.timings,
                       thumbnail_key=thumbnail_key(self.owner, self.id, outcome.thumbnail_content_type)
                       if outcome.thumbnail else None,
                       annotated_key=output_keys(self.owner, self.id)["annotated"] if outcome.annotated else None)

    def failed(self, code: str, message: str) -> "Result":
        """Final and FAILED with a reason; no labels and no outputs."""
        return replace(self._final(FAILED), error={"code": code, "message": message}, labels=(), weaker_labels=(),
                       text_detections=(), face_details=(), moderation_labels=(), image_properties=None,
                       review=None, model_versions={}, top_label=None, thumbnail_key=None, annotated_key=None)

    def from_outcome(self, outcome) -> "Result":
        """Final as the pipeline decided: succeeded, or failed with its code but with what it read."""
        if outcome.status == SUCCEEDED:
            return self.succeeded(outcome)
        failed = self.failed(outcome.error["code"], outcome.error["message"])
        return replace(failed, metadata=outcome.metadata, timings=outcome.timings)

    def _final(self, status: str) -> "Result":
        now = utc_now()
        return replace(self, status=status, error=None, completed_at=now, updated_at=now,
                       result_key=output_keys(self.owner, self.id)["result"])


def _kept_release(before: dict | None, verdict: dict | None) -> dict | None:
    """Moderation's verdict, except that a photo an admin released stays released when it is flagged again."""
    if verdict and verdict.get("held") and before and before.get("released_by"):
        return {**verdict, "held": False, "released_by": before["released_by"],
                "released_at": before.get("released_at")}
    return verdict


_TUPLE_FIELDS = ("labels", "weaker_labels", "features", "text_detections", "face_details", "moderation_labels")


def queued_result(job: Job) -> ResultDoc:
    """The result document as it stands when a job is accepted."""
    return Result.queued(job).to_dict()


def failed_result(result: Mapping[str, Any], code: str, message: str) -> ResultDoc:
    """A copy of a result document marked FAILED with a reason, stamped completed now."""
    return Result.from_dict(result).failed(code, message).to_dict()


def response_message(result: dict) -> str:
    """The short message put on the response queue for downstream consumers."""
    short = {k: result.get(k) for k in ("id", "owner", "album", "filename", "status", "top_label", "completed_at")}
    if result.get("error"):
        short["error_code"] = result["error"].get("code")
    return json.dumps(short, separators=(",", ":"))


def label_answer(filename: str, top_label: str | None) -> str:
    """The CSE546-style `name:label` answer."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return f"{stem}:{top_label or 'unknown'}"
