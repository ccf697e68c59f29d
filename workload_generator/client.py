"""The HTTP side: one requests.Session per thread, bounded retries, sync and api modes."""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

import requests

from workload_generator.config import SYNC, LoadConfig, auth_headers
from workload_generator.images import ImageFile
from workload_generator.report import RequestResult

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})  # the server asks us to come back; other 4xx/5xx are final
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED"})
USER_AGENT = "sightfleet-workload-generator/1"
MAX_SERVER_WAIT_S = 60   # POST /api/images?wait= accepts at most this many seconds


class Stopped(Exception):
    """The run was interrupted while this request waited to retry or poll."""


class _Failure(Exception):
    """One image failed for a reason that goes into the report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Call:
    """The budget of one image: its deadline and how many tries it took."""

    deadline: float
    attempts: int = 1

    def remaining(self) -> float:
        """Seconds left; raise a timeout failure when none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Failure("timeout")
        return left


@dataclass(frozen=True)
class _Answer:
    label: str | None
    image_id: str | None = None
    service_ms: float | None = None
    instance_id: str | None = None


def retry_after_s(value: str | None) -> float | None:
    """Seconds asked for by a Retry-After header (delta seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def http_reason(response: requests.Response) -> str:
    """Failure key of an HTTP answer: `http_<status>`, plus `:<error code>` from a JSON error body."""
    code = None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        pass
    return f"http_{response.status_code}" + (f":{code}" if isinstance(code, str) and code else "")


def parse_label_answer(name: str, text: str) -> str:
    """The label of a CSE546 `name:label` answer; raise ValueError when text has another shape."""
    text = text.strip()
    if text.startswith(f"{name}:"):
        return text[len(name) + 1:]
    if ":" not in text:
        raise ValueError(f"answer {text[:80]!r} is not name:label")
    return text.rsplit(":", 1)[1]


def service_time_ms(timings: dict | None) -> float | None:
    """The service's total time per image from a result's timings, in ms, when present."""
    timings = timings or {}
    value = timings.get("total_ms", timings.get("total"))
    return float(value) if isinstance(value, (int, float)) else None


def answer_from_result(doc: dict) -> _Answer:
    """What a final result document says; raise a failure for FAILED results."""
    if doc["status"] != "SUCCEEDED":
        code = (doc.get("error") or {}).get("code")
        raise _Failure(f"failed:{code}" if code else "failed")
    label = doc.get("top_label") or next((item.get("Name") for item in doc.get("labels") or []), None)
    return _Answer(label, doc.get("id"), service_time_ms(doc.get("timings")), doc.get("instance_id"))


class Client:
    """Sends images to one target; safe to call from many threads at once."""

    def __init__(self, config: LoadConfig, stop: threading.Event, origin: float | None = None):
        self._config = config
        self._stop = stop
        self._origin = time.monotonic() if origin is None else origin
        self._root = config.url if config.url.endswith("/") else config.url + "/"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []
        self._sent = 0

    @property
    def sent(self) -> int:
        """How many images have started (each counted once, however many tries)."""
        with self._lock:
            return self._sent

    def session(self) -> requests.Session:
        """This thread's session (requests sessions are not safe to share between threads)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            session.headers.update(auth_headers(self._config.api_key))
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every thread's session."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def send(self, image: ImageFile) -> RequestResult:
        """Upload one image and wait for its label; never raises for a failed request."""
        with self._lock:
            self._sent += 1
        started = time.monotonic()
        call = _Call(deadline=started + self._config.timeout_s)
        answer, reason = None, None
        try:
            answer = self._send_sync(image, call) if self._config.mode == SYNC else self._send_api(image, call)
        except _Failure as failure:
            reason = failure.reason
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # JSON of an unexpected shape
            logger.debug("bad response for %s: %s", image.filename, exc)
            reason = "bad_response"
        return RequestResult(
            filename=image.filename, ok=reason is None, started_s=started - self._origin,
            latency_s=time.monotonic() - started, attempts=call.attempts, reason=reason,
            **(asdict(answer) if answer else {}))

    def _send_sync(self, image: ImageFile, call: _Call) -> _Answer:
        """POST / with field myfile; the answer is `name:label` text."""
        files = {"myfile": (image.filename, image.read(), image.content_type)}
        response = self._request(call, "POST", self._config.url, files=files)
        if response.status_code != 200:
            raise _Failure(http_reason(response))
        return _Answer(parse_label_answer(image.name, response.text))

    def _send_api(self, image: ImageFile, call: _Call) -> _Answer:
        """POST /api/images (asking the server to wait), then poll until the result is final."""
        params = {"album": self._config.album} if self._config.album else {}
        # At most the API's own limit (a longer ?wait= is refused), keeping a second to read the answer.
        wait = min(self._config.wait_s, MAX_SERVER_WAIT_S, call.remaining() - 1)
        if wait >= 1:
            params["wait"] = int(wait)
        files = [("file", (image.filename, image.read(), image.content_type))]
        response = self._request(call, "POST", urljoin(self._root, "api/images"), params=params, files=files)
        if response.status_code not in (200, 202):
            raise _Failure(http_reason(response))
        doc = response.json()["images"][0]
        status_url = urljoin(self._root, doc.get("status_url") or f"api/images/{doc['id']}")
        return answer_from_result(self._poll(call, status_url, doc))

    def _poll(self, call: _Call, status_url: str, doc: dict) -> dict:
        """GET status_url with growing pauses until the result is final or the deadline passes."""
        delay = self._config.poll_interval_s
        while doc.get("status") not in FINAL_STATUSES:
            self._pause(min(delay, call.remaining()))
            delay = min(delay * 2, self._config.max_poll_interval_s)
            response = self._request(call, "GET", status_url)
            if response.status_code != 200:
                raise _Failure(http_reason(response))
            doc = response.json()
        return doc

    def _pause(self, seconds: float) -> None:
        """Sleep, waking at once when the run is interrupted."""
        if self._stop.wait(seconds):
            raise Stopped()

    def _request(self, call: _Call, method: str, url: str, **kwargs) -> requests.Response:
        """One HTTP call with bounded retries of connection errors and 429/503 answers."""
        for retry in range(self._config.retries + 1):
            remaining = call.remaining()
            timeout = (min(self._config.connect_timeout_s, remaining), remaining)
            response = None
            try:
                response = self.session().request(method, url, timeout=timeout, **kwargs)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                logger.debug("%s %s: %s", method, url, exc)  # refused or dropped: retry below
            except requests.Timeout as exc:
                # the server got the request and may still be working on it: sending it again
                # would only add load, so a read timeout is final
                raise _Failure("timeout") from exc
            last = retry == self._config.retries
            if response is not None and (last or response.status_code not in RETRY_STATUSES):
                return response
            if last:
                raise _Failure("connection_error")
            self._pause(min(self._retry_delay(retry, response), call.remaining()))
            call.attempts += 1
        raise AssertionError("unreachable: the last try returns or raises")

    def _retry_delay(self, retry: int, response: requests.Response | None) -> float:
        """The server's Retry-After when it gave one, else exponential backoff with jitter."""
        asked = retry_after_s(response.headers.get("Retry-After")) if response is not None else None
        if asked is None:
            asked = self._config.backoff_s * 2 ** retry * random.uniform(0.5, 1.0)
        return min(asked, self._config.max_backoff_s)
