"""The job message and result document that the tiers exchange (versioned JSON)."""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from sightfleet.errors import InvalidJob

JOB_VERSION = 1
QUEUED, PROCESSING, SUCCEEDED, FAILED = "QUEUED", "PROCESSING", "SUCCEEDED", "FAILED"
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED})
STATUSES = (QUEUED, PROCESSING, SUCCEEDED, FAILED)
DEFAULT_ALBUM = "default"
_ALBUM_RE = re.compile(r"^[\w .,'()&+-]{1,64}$", re.UNICODE)
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
CONTENT_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}


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


def is_image_id(value: str) -> bool:
    """True when value has the shape of an id from new_image_id."""
    return bool(_ID_RE.match(value or ""))


def clean_album(name: str | None) -> str:
    """Validate an album name typed by a user; raise ValueError with a readable reason."""
    name = (name or "").strip() or DEFAULT_ALBUM
    if not _ALBUM_RE.match(name):
        raise ValueError("album names are 1-64 letters, digits, spaces or .,'()&+-_ characters")
    return name


def input_key(image_id: str, content_type: str) -> str:
    """Input-bucket key of an original; never derived from the user's file name."""
    return f"originals/{image_id}.{CONTENT_EXTENSIONS.get(content_type, 'bin')}"


def output_keys(image_id: str) -> dict[str, str]:
    """Output-bucket keys of one image's artefacts (the thumbnail's extension varies, see thumbnail_key)."""
    return {
        "thumbnail": f"thumbnails/{image_id}",
        "annotated": f"annotated/{image_id}.jpg",
        "result": f"results/{image_id}.json",
    }


def thumbnail_key(image_id: str, content_type: str | None) -> str:
    """Output-bucket key of a thumbnail stored as content_type (JPEG unless it is a known other type)."""
    return f"{output_keys(image_id)['thumbnail']}.{CONTENT_EXTENSIONS.get(content_type, 'jpg')}"


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

    @property
    def is_inline(self) -> bool:
        return self.inline_b64 is not None

    def inline_bytes(self) -> bytes:
        return base64.b64decode(self.inline_b64 or "")

    def to_message(self) -> str:
        """Serialise as the queue message body."""
        body = {"v": JOB_VERSION, **asdict(self)}
        return json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_message(cls, body: str) -> "Job":
        """Parse a queue message body; raise InvalidJob when it is not a job we understand."""
        try:
            doc = json.loads(body)
            if doc.pop("v") != JOB_VERSION:
                raise InvalidJob(f"unsupported job version in {body[:80]!r}")
            job = cls(**doc)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidJob(f"not a job message: {exc}") from exc
        if not is_image_id(job.id) or (job.inline_b64 is None and not (job.bucket and job.key)):
            raise InvalidJob(f"job {job.id!r} has no usable id or image location")
        return job


def queued_result(job: Job) -> dict:
    """The result document as it stands when a job is accepted."""
    return {
        "id": job.id,
        "album": job.album,
        "filename": job.filename,
        "content_type": job.content_type,
        "size": job.size,
        "status": QUEUED,
        "labels": [],
        "top_label": None,
        "metadata": {},
        "error": None,
        "submitted_at": job.submitted_at,
        "updated_at": job.submitted_at,
        "started_at": None,
        "completed_at": None,
        "timings": {},
        "instance_id": None,
        "input_key": job.key or input_key(job.id, job.content_type),
        "thumbnail_key": None,
        "annotated_key": None,
        "result_key": None,
        "attempts": 0,
    }


def failed_result(result: dict, code: str, message: str) -> dict:
    """A copy of result marked FAILED with a reason, stamped completed now."""
    now = utc_now()
    failed = dict(result)
    failed.update(status=FAILED, error={"code": code, "message": message}, labels=[], top_label=None,
                  completed_at=now, updated_at=now)
    return failed


def response_message(result: dict) -> str:
    """The short message put on the response queue for downstream consumers."""
    short = {k: result.get(k) for k in ("id", "album", "filename", "status", "top_label", "completed_at")}
    if result.get("error"):
        short["error_code"] = result["error"].get("code")
    return json.dumps(short, separators=(",", ":"))


def label_answer(filename: str, top_label: str | None) -> str:
    """The CSE546-style `name:label` answer."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return f"{stem}:{top_label or 'unknown'}"
