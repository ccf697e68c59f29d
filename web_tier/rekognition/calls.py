"""A Rekognition call through the fleet: submit the photo, wait for its result, and let the photo go afterwards.

No inference happens in the web tier: a call is an upload like any other, filed under the caller in
the album API_ALBUM, and the web tier waits for its result. When the fleet cannot answer within the
wait (it is starting from zero, say), the caller gets a retryable error; a retry of the same photo by
the same owner within PENDING_TTL_S waits for the job already sent instead of sending another, so
the SDKs' automatic retries cost no extra work. A job nobody comes back for is deleted once it ends
(ABANDONED_WAIT_S at most), unless its account keeps API photos.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Callable

from sightfleet.aws.calls import PendingCalls
from sightfleet.contracts import is_deleted
from web_tier.submit import Upload
from web_tier.waiting import WaitRefused

log = logging.getLogger(__name__)
API_ALBUM = "rekognition-api"
PENDING_TTL_S = 600
ABANDONED_WAIT_S = 600
CHECK_S = 5.0


def photo_digest(upload: Upload) -> str:
    """What names a call among its owner's pending calls: its photo and the features its job runs.

    (DetectText and DetectLabels of one photo are different jobs: neither may join the other's.)
    """
    digest = hashlib.sha256(upload.data).hexdigest()
    return f"{digest}-{'+'.join(upload.features)}" if upload.features else digest


class CallRefused(Exception):
    """The call's job is sent, but the caller holds every wait it may: it is answered without its result."""

    def __init__(self, image_id: str):
        super().__init__(image_id)
        self.image_id = image_id


class Calls:
    """Rekognition calls through the fleet, joined across processes by owner and photo."""

    def __init__(self, submit: Callable[[Upload], dict], wait: Callable[[list[str], float], list[dict] | None],
                 wait_s: float, pending: PendingCalls):
        self._submit, self._wait, self._wait_s, self.pending = submit, wait, wait_s, pending

    def answer(self, upload: Upload) -> tuple[str, dict | None]:
        """The photo's job id and final result; None for the result when the fleet did not answer in time.

        Raises CallRefused (with the job's id) when the caller may not wait now (web_tier/waiting.py's budget).
        """
        owner, digest = upload.owner, photo_digest(upload)
        image_id = self._join(owner, digest) or self._send(owner, digest, upload)
        try:
            done = self._wait([image_id], self._wait_s)
        except WaitRefused:
            raise CallRefused(image_id) from None
        if done is not None and is_deleted(done[0]):   # deleted meanwhile: this photo needs a job of its own
            image_id = self._send(owner, digest, upload)
            done = self._wait([image_id], self._wait_s)
        if done is not None:
            self.pending.done(owner, digest)
        return image_id, None if done is None else done[0]

    def send_only(self, upload: Upload) -> str:
        """The photo's job, joined or sent, without waiting for it (a retry joins it); its image id."""
        owner, digest = upload.owner, photo_digest(upload)
        return self._join(owner, digest) or self._send(owner, digest, upload)

    def _join(self, owner: str, digest: str) -> str | None:
        image_id = self.pending.job_of(owner, digest)
        if image_id is not None:
            self.pending.sent(owner, digest, image_id)   # the retry window starts again
            log.info("a retried call joins job %s", image_id)
        return image_id

    def _send(self, owner: str, digest: str, upload: Upload) -> str:
        image_id = self._submit(upload)["id"]
        self.pending.sent(owner, digest, image_id)
        return image_id


def clean_up_when_unclaimed(pending: PendingCalls, upload: Upload, image_id: str,
                            wait: Callable[[list[str], float], list[dict] | None],
                            delete: Callable[[dict], None]) -> threading.Thread:
    """In the background: once the job has ended and no retry came for it within its window, delete its photo.

    A retry that got the answer deleted the photo itself (and ended the window); one still waiting keeps it.
    """
    digest = photo_digest(upload)

    def run() -> None:
        done = wait([image_id], ABANDONED_WAIT_S)
        deadline = time.monotonic() + PENDING_TTL_S
        while done is not None and time.monotonic() < deadline:
            if pending.job_of(upload.owner, digest) != image_id:   # answered (so deleted), or another job
                return
            time.sleep(CHECK_S)
        try:
            if done is not None and pending.job_of(upload.owner, digest) == image_id:
                delete(done[0])
        except Exception:   # noqa: BLE001 - a thread of its own: log whatever stops the deletion
            log.exception("could not delete %s, the photo of an abandoned Rekognition call", image_id)
    thread = threading.Thread(target=run, name=f"rekognition-cleanup-{image_id}", daemon=True)
    thread.start()
    return thread
