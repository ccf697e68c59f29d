"""Accepting an upload: check it at the door, record it, and put the job on the request queue."""
from __future__ import annotations

import base64
import logging
import math
from dataclasses import dataclass
from typing import Callable

from sightfleet.contracts import Job, clean_album, input_key, new_image_id, queued_result, utc_now
from sightfleet.errors import SightfleetError, Unavailable
from sightfleet.formats import ACCEPTED, HEAD_BYTES, check_head

log = logging.getLogger(__name__)
# Room left in a message for the JSON envelope around the base64 payload.
_ENVELOPE_BYTES = 2048
_MAX_NAME = 200


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


def upload_from_part(part, album: str | None) -> Upload:
    """An Upload from a multipart file part (werkzeug FileStorage)."""
    return Upload(part.read(), part.filename, album)


@dataclass(frozen=True)
class Checked:
    """An upload that passed the door check, with what queuing it needs."""

    upload: Upload
    content_type: str
    album: str


def safe_filename(name: str | None) -> str:
    """Keep a display name only: no directories, control characters or absurd length.

    The name is only ever shown (escaped); storage keys come from the image id alone.
    """
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if len(name) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        keep = dot + ext if stem and len(ext) <= 10 else ""
        name = name[:_MAX_NAME - len(keep)] + keep
    return name or "upload"


class Submitter:
    """Turns uploads into queued jobs; nothing half-written is left when a write fails."""

    def __init__(self, resources, max_upload_bytes: int, on_accept: Callable[[dict], None] | None = None):
        self._r = resources
        self._max_bytes = max_upload_bytes
        self._on_accept = on_accept
        self._inline_limit: int | None = None

    def check(self, upload: Upload) -> Checked:
        """Raise Rejected unless the upload is a JPEG or PNG within the size limit with a valid album.

        Nothing is written, so a request can check every file first and then submit what this returns.
        """
        if len(upload.data) > self._max_bytes:
            raise Rejected(413, "TOO_LARGE", f"the file is {_mb(len(upload.data))} MB; the limit is "
                                             f"{_mb(self._max_bytes)} MB")
        found, reason = check_head(upload.data[:HEAD_BYTES])
        if reason:
            code = "EMPTY_FILE" if not upload.data else "UNSUPPORTED_FORMAT"
            raise Rejected(400 if not upload.data else 415, code, reason)
        return Checked(upload, ACCEPTED[found], self._album(upload))

    def submit(self, upload: Upload | Checked) -> dict:
        """Accept one upload, checking it unless check() already did; returns its QUEUED result.

        Raises Rejected or Unavailable.
        """
        checked = upload if isinstance(upload, Checked) else self.check(upload)
        job = self._job(checked)
        result = queued_result(job)
        written: list = []
        try:
            if not job.is_inline:
                self._r.inputs.put(job.key, checked.upload.data, job.content_type)
                written.append(lambda: self._r.inputs.delete(job.key))
            self._r.results.create(result)
            written.append(lambda: self._r.results.delete(job.id))
            self._r.requests.send(job.to_message())
        except SightfleetError as exc:
            self._undo(written)
            raise Unavailable(f"could not queue the image: {exc}") from exc
        log.info("queued %s (%s bytes, %s)", job.id, job.size, "inline" if job.is_inline else "s3")
        if self._on_accept:
            self._on_accept(result)
        return result

    @staticmethod
    def _album(upload: Upload) -> str:
        try:
            return clean_album(upload.album)
        except ValueError as exc:
            raise Rejected(400, "BAD_ALBUM", str(exc)) from exc

    def _job(self, checked: Checked) -> Job:
        image_id, data = new_image_id(), checked.upload.data
        common = dict(id=image_id, album=checked.album, filename=safe_filename(checked.upload.filename),
                      content_type=checked.content_type, submitted_at=utc_now(), size=len(data))
        if self._fits_inline(len(data)):
            return Job(**common, inline_b64=base64.b64encode(data).decode())
        return Job(**common, bucket=self._r.inputs.name, key=input_key(image_id, checked.content_type))

    def _fits_inline(self, size: int) -> bool:
        if self._inline_limit is None:
            # Read the queue's real limit once; base64 grows the payload by a third.
            try:
                max_bytes = self._r.requests.max_message_bytes()
            except SightfleetError as exc:  # a missing queue too: for the caller it is out of reach
                raise Unavailable(f"cannot read the request queue's message size limit: {exc}") from exc
            self._inline_limit = (max_bytes - _ENVELOPE_BYTES) * 3 // 4
        return size <= self._inline_limit

    @staticmethod
    def _undo(steps: list) -> None:
        for step in reversed(steps):
            try:
                step()
            except SightfleetError as exc:
                log.error("could not roll back a partial submission: %s", exc)


def _mb(size: int) -> str:
    """Bytes as MB the way the limit is configured (SIGHTFLEET_MAX_UPLOAD_MB counts MiB).

    Rounded up, so a file just over the limit never reads as equal to it.
    """
    return f"{math.ceil(size / 2**20 * 100) / 100:.2f}".rstrip("0").rstrip(".")
