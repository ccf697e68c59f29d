"""Samples the target's /api/ops/summary in the background, when the target has one."""
from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urljoin

import requests

from workload_generator.config import auth_headers
from workload_generator.report import FleetSample

logger = logging.getLogger(__name__)

SUMMARY_PATH = "api/ops/summary"
# A course deployment has no summary; without an admin's key a Sightfleet answers 401 or 403: nothing to sample.
ABSENT_STATUSES = frozenset({401, 403, 404, 405})
STOP_JOIN_S = 2.0


def sample_from_summary(doc: dict, t_s: float) -> FleetSample:
    """A FleetSample from an /api/ops/summary document (missing figures read as 0)."""
    instances, queue = doc.get("instances") or {}, doc.get("queue") or {}
    return FleetSample(
        t_s=t_s,
        running=int(instances.get("running") or 0),
        pending=int(instances.get("pending") or 0),
        desired=int(instances.get("desired") or 0),
        visible=int(queue.get("visible") or 0),
        in_flight=int(queue.get("in_flight") or 0),
        dead_letter=int(queue.get("dead_letter") or 0),
    )


class FleetSampler:
    """A daemon thread that reads the fleet summary about every interval_s seconds."""

    def __init__(self, url: str, interval_s: float = 1.0, origin: float | None = None, timeout_s: float = 10.0,
                 api_key: str | None = None):
        self._url = urljoin(url if url.endswith("/") else url + "/", SUMMARY_PATH)
        self._interval_s = interval_s
        self._origin = time.monotonic() if origin is None else origin
        self._timeout_s = timeout_s
        self._api_key = api_key
        self._stop = threading.Event()
        self._samples: list[FleetSample] = []
        self._thread = threading.Thread(target=self._run, name="fleet-sampler", daemon=True)
        self.absent = False
        self.missed = 0  # samples lost to errors or timeouts: a busy target answers late or not at all

    def start(self) -> "FleetSampler":
        self._thread.start()
        return self

    def stop(self) -> list[FleetSample]:
        """Stop sampling and return the samples, oldest first."""
        self._stop.set()
        self._thread.join(STOP_JOIN_S)  # a sample still in flight is dropped, not waited for
        if self.missed:
            logger.info("%s fleet samples missed (target busy or unreachable), %s taken", self.missed,
                        len(self._samples))
        return list(self._samples)

    def _run(self) -> None:
        with requests.Session() as session:
            session.headers.update(auth_headers(self._api_key))
            while not self._stop.is_set():
                if not self._sample(session):
                    return
                self._stop.wait(self._interval_s)

    def _sample(self, session: requests.Session) -> bool:
        """Take one sample; False when the target has no summary endpoint."""
        asked = time.monotonic()
        try:
            response = session.get(self._url, timeout=self._timeout_s)
            # the figures were read somewhere between asking and answering: date them halfway
            t_s = (asked + time.monotonic()) / 2 - self._origin
            if response.status_code in ABSENT_STATUSES:
                logger.info("%s answers %s: fleet not sampled", self._url, response.status_code)
                self.absent = True
                return False
            response.raise_for_status()
            self._samples.append(sample_from_summary(response.json(), t_s))
        except (requests.RequestException, ValueError, TypeError, AttributeError) as exc:
            self.missed += 1
            logger.debug("fleet sample failed: %s", exc)  # a busy target: try again next tick
        return True
