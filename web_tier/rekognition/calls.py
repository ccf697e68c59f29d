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

from sightfleet.contracts import is_deleted
from web_tier.submit import Upload

log = logging.getLogger(__name__)
API_ALBUM = "rekognition-api"
PENDING_TTL_S = 600
ABANDONED_WAIT_S = 600


class Calls:
    """Calls in flight in this process, by owner and photo (so that retries join the job already sent)."""

    def __init__(self, submit: Callable[[Upload], dict], wait: Callable[[list[str], float], list[dict] | None],
                 wait_s: float):
        self._submit, self._wait, self._wait_s = submit, wait, wait_s
        self._pending: dict[tuple[str, str], tuple[str, float]] = {}
        self._abandoned: set[str] = set()
        self._lock = threading.Lock()

    def answer(self, upload: Upload) -> tuple[str, dict | None]:
        """The photo's job id and final result; None for the result when the fleet did not answer in time."""
        key = (upload.owner, hashlib.sha256(upload.data).hexdigest())
        image_id = self._join(key) or self._send(key, upload)
        done = self._wait([image_id], self._wait_s)
        if done is not None and is_deleted(done[0]):   # deleted meanwhile: this photo needs a job of its own
            image_id = self._send(key, upload)
            done = self._wait([image_id], self._wait_s)
        with self._lock:
            if done is None:
                self._abandoned.add(image_id)
            else:
                self._pending.pop(key, None)
        return image_id, None if done is None else done[0]

    def abandoned(self, image_id: str) -> bool:
        """Whether nobody waits for this job any more (so whoever sees it end may delete it)."""
        with self._lock:
            return image_id in self._abandoned

    def forget(self, image_id: str) -> None:
        with self._lock:
            self._abandoned.discard(image_id)

    def _join(self, key: tuple[str, str]) -> str | None:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, (_, at) in self._pending.items() if now - at > PENDING_TTL_S]:
                del self._pending[stale]
            found = self._pending.get(key)
            if found is not None:
                self._abandoned.discard(found[0])
                log.info("a retried call joins job %s", found[0])
        return None if found is None else found[0]

    def _send(self, key: tuple[str, str], upload: Upload) -> str:
        image_id = self._submit(upload)["id"]
        with self._lock:
            self._pending[key] = (image_id, time.monotonic())
        return image_id


def clean_up_when_final(calls: Calls, image_id: str, wait: Callable[[list[str], float], list[dict] | None],
                        delete: Callable[[dict], None]) -> threading.Thread:
    """In the background: wait for an abandoned job to end, then delete it if still nobody waits for it."""
    def run() -> None:
        done = wait([image_id], ABANDONED_WAIT_S)
        if done is None or not calls.abandoned(image_id):
            return
        calls.forget(image_id)
        try:
            delete(done[0])
        except Exception:   # noqa: BLE001 - a thread of its own: log whatever stops the deletion
            log.exception("could not delete %s, the photo of an abandoned Rekognition call", image_id)
    thread = threading.Thread(target=run, name=f"rekognition-cleanup-{image_id}", daemon=True)
    thread.start()
    return thread
