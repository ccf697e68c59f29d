"""Accepting an upload: check it at the door, put the job on the request queue, then record it."""
from __future__ import annotations

import base64
import io
import logging
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

from PIL import Image

from sightfleet.contracts import (ANONYMOUS_OWNER, Job, clean_album, input_key, is_owner, new_image_id,
                                  queued_result, utc_now)
from sightfleet.errors import ConditionFailed, SightfleetError, Unavailable
from sightfleet.features import effective_features
from sightfleet.formats import ACCEPTED, HEAD_BYTES, check_head

log = logging.getLogger(__name__)
# A multipart request carries at most this many `file` parts (and so this many images of the largest size).
MAX_IMAGES_PER_REQUEST = 10
# The multipart fields the CSE546 course endpoint takes its one image from (web_tier/course_endpoint.py).
COURSE_FIELDS = ("myfile", "inputFile")
_MAX_NAME = 200
# What Pillow raises for a header it cannot read.
_BAD_HEADER = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class Rejected(Exception):
    """An upload refused at the door; carries the HTTP status and an error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Upload:
    """One file as received from a form, multipart part or raw body."""

    data: bytes
    filename: str | None  # shown only after safe_filename, which names a nameless file "upload"
    album: str | None = None
    owner: str = ANONYMOUS_OWNER   # the account the image will belong to (the caller's)
    filters: dict | None = None    # the upload's label filters (LabelFilters.to_dict()), carried by the job
    features: tuple[str, ...] | None = None   # what the worker runs (None: the stack's default, with moderation)


def upload_from_part(part, album: str | None, owner: str, max_bytes: int) -> Upload:
    """An Upload from a multipart file part (werkzeug FileStorage), read no further than one byte past max_bytes.

    (Werkzeug spools a large part to a temporary file; reading it whole would bring it all into memory.)
    """
    data = part.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Rejected(413, "TOO_LARGE", f"the file is larger than allowed; the limit is {_mb(max_bytes)} MB")
    return Upload(data, part.filename, album, owner)


def check_part_count(parts: list) -> None:
    """Rejected unless the request has at most MAX_IMAGES_PER_REQUEST file parts."""
    if len(parts) > MAX_IMAGES_PER_REQUEST:
        raise Rejected(413, "TOO_MANY_FILES", f"the request has {len(parts)} files; send at most "
                                              f"{MAX_IMAGES_PER_REQUEST} per request")


def uploads_from_parts(parts: list, album: str | None, owner: str, max_bytes: int) -> list[Upload]:
    """Uploads from a request's file parts, at most MAX_IMAGES_PER_REQUEST of them, each read with a bound."""
    check_part_count(parts)
    return [upload_from_part(part, album, owner, max_bytes) for part in parts]


@dataclass(frozen=True)
class Checked:
    """An upload that passed the door check, with what queuing it needs."""

    upload: Upload
    content_type: str
    album: str


def safe_filename(name: str | None) -> str:
    """Keep a display name only: no directories, control or direction characters, absurd length.

    The name is only ever shown (escaped); storage keys come from the image id alone.
    """
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    # isprintable() is False for control characters, right-to-left marks and overrides (Cf), line breaks.
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if len(name) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        keep = dot + ext if stem and len(ext) <= 10 else ""
        name = name[:_MAX_NAME - len(keep)] + keep
    return name if name.strip(". ") else "upload"


def read_header(data: bytes, fmt: str, max_pixels: int) -> tuple[int, int]:
    """Width and height from the image's header (no pixel is decoded); Rejected when unreadable or too large."""
    try:
        width, height = Image.open(io.BytesIO(data), formats=[fmt]).size
    except Image.DecompressionBombError:  # Pillow's own hard limit, far over any sane max_pixels
        pillow_limit = 2 * Image.MAX_IMAGE_PIXELS
        raise _too_many_pixels(f"has more than {pillow_limit / 1e6:,.1f} megapixels", max_pixels) from None
    except _BAD_HEADER as exc:
        log.info("refused a %s whose header cannot be read: %s", fmt, exc)
        raise Rejected(400, "CORRUPT_IMAGE", f"the file starts like a {fmt} image but its header cannot be "
                                             "read; it is damaged or not really an image") from None
    if width < 1 or height < 1:
        raise Rejected(400, "CORRUPT_IMAGE", f"the {fmt} header claims an empty size {width}x{height}")
    if width * height > max_pixels:
        raise _too_many_pixels(f"is {width}x{height} ({width * height / 1e6:,.1f} megapixels)", max_pixels)
    return width, height


def _too_many_pixels(size: str, max_pixels: int) -> Rejected:
    return Rejected(413, "IMAGE_TOO_LARGE", f"the image {size}; the limit is {max_pixels / 1e6:,.1f} megapixels")


class Submitter:
    """Turns uploads into queued jobs: the job message goes out first, so no row can wait for a lost send."""

    def __init__(self, resources, max_upload_bytes: int, on_accept: Callable[[dict], None] | None = None):
        self._resources = resources
        self._max_bytes = max_upload_bytes
        self._max_pixels = resources.settings.max_pixels
        self._on_accept = on_accept
        self._max_message: int | None = None

    @property
    def max_bytes(self) -> int:
        """The largest file accepted (SIGHTFLEET_MAX_UPLOAD_MB)."""
        return self._max_bytes

    def check(self, upload: Upload) -> Checked:
        """Raise Rejected unless the upload is a readable JPEG or PNG within the limits with a valid album.

        Nothing is written, so a request can check every file first and then submit what this returns.
        """
        if not is_owner(upload.owner):   # the worker would refuse the job: refuse it here, before queuing
            log.error("account id %r cannot own images (letters, digits, _.@- only)", upload.owner)
            raise Rejected(400, "BAD_OWNER", "this account cannot own images: its id is not a valid owner")
        if len(upload.data) > self._max_bytes:
            raise Rejected(413, "TOO_LARGE", f"the file is {_mb(len(upload.data))} MB; the limit is "
                                             f"{_mb(self._max_bytes)} MB")
        found, reason = check_head(upload.data[:HEAD_BYTES])
        if reason:
            code = "EMPTY_FILE" if not upload.data else "UNSUPPORTED_FORMAT"
            raise Rejected(400 if not upload.data else 415, code, reason)
        # The header only: a body damaged further in passes here and ends FAILED (CORRUPT_IMAGE) at the worker.
        read_header(upload.data, found, self._max_pixels)
        return Checked(upload, ACCEPTED[found], self._album(upload))

    def submit(self, upload: Upload | Checked, before_send: Callable[[Job], None] | None = None) -> dict:
        """Accept one upload, checking it unless check() already did; returns its QUEUED result.

        `before_send` learns the job before it is queued (what must be in place before a worker can finish it).
        Raises Rejected, or Unavailable when the job could not be sent (then nothing is left behind).
        """
        checked = upload if isinstance(upload, Checked) else self.check(upload)
        job = self._job(checked)
        if before_send is not None:
            before_send(job)
        self._send(job, checked.upload.data)
        result = queued_result(job)
        self._record(result)
        log.info("queued %s (%s bytes, %s)", job.id, job.size, "inline" if job.is_inline else "s3")
        if self._on_accept:
            self._on_accept(result)
        return result

    def _send(self, job: Job, data: bytes) -> None:
        """Store a pointer job's original, then send the job; on failure remove the original again."""
        stored = False
        try:
            if not job.is_inline:
                self._resources.inputs.put(job.key, data, job.content_type)
                stored = True
            self._resources.requests.send(job.to_message())
        except SightfleetError as exc:
            if stored:
                self._remove_original(job)
            raise Unavailable(f"could not queue the image: {exc}") from exc

    def _record(self, result: dict) -> None:
        """Write the QUEUED row after the send; the job is accepted whether or not this write lands.

        A worker that claims the job writes the row itself (results.start accepts a missing row),
        so a failed write here only means GET answers 404 until then; a ConditionFailed means a
        worker was faster and its row stands.
        """
        try:
            self._resources.results.create(result)
        except ConditionFailed:
            log.info("job %s was claimed before its QUEUED row was written", result["id"])
        except SightfleetError as exc:
            log.warning("job %s is queued but its QUEUED row could not be written (%s); "
                        "the worker that claims it writes the row", result["id"], exc)

    def _remove_original(self, job: Job) -> None:
        try:
            self._resources.inputs.delete(job.key)
        except SightfleetError as exc:
            log.error("could not remove the original %s of an image that was not queued: %s", job.key, exc)

    @staticmethod
    def _album(upload: Upload) -> str:
        try:
            return clean_album(upload.album)
        except ValueError as exc:
            raise Rejected(400, "BAD_ALBUM", str(exc)) from exc

    def _job(self, checked: Checked) -> Job:
        image_id, data = new_image_id(), checked.upload.data
        owner = checked.upload.owner
        common = dict(id=image_id, album=checked.album, filename=safe_filename(checked.upload.filename),
                      content_type=checked.content_type, submitted_at=utc_now(), size=len(data), owner=owner,
                      filters=checked.upload.filters or None, features=self._features(checked.upload))
        # The envelope is measured, not guessed: escaped non-ASCII names and albums can take kilobytes.
        envelope = len(Job(**common, inline_b64="").to_message().encode())
        if envelope + 4 * math.ceil(len(data) / 3) <= self._max_message_bytes():
            return Job(**common, inline_b64=base64.b64encode(data).decode())
        return Job(**common, bucket=self._resources.inputs.name, key=input_key(owner, image_id, checked.content_type))

    def _features(self, upload: Upload) -> tuple[str, ...]:
        """The upload's features, or (the course endpoint's, the form's without any) the stack's defaults."""
        settings = self._resources.settings
        return upload.features or effective_features(None, None, settings.default_features, settings.moderation)

    def _max_message_bytes(self) -> int:
        """The request queue's real size limit, read once."""
        if self._max_message is None:
            try:
                self._max_message = self._resources.requests.max_message_bytes()
            except SightfleetError as exc:  # a missing queue too: for the caller it is out of reach
                raise Unavailable(f"cannot read the request queue's message size limit: {exc}") from exc
        return self._max_message


def _mb(size: int) -> str:
    """Bytes as MB the way the limit is configured (SIGHTFLEET_MAX_UPLOAD_MB counts MiB).

    Rounded up, so a file just over the limit never reads as equal to it.
    """
    return f"{math.ceil(size / 2**20 * 100) / 100:.2f}".rstrip("0").rstrip(".")
