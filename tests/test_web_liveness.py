"""Liveness of the web tier against the real moto endpoint: no image QUEUED forever, a bounded /healthz.

The web tier sends an image's job before it writes the QUEUED row, so no death of the process can
leave a row that no message will ever move; a row that is never written is written by the worker
that claims the job (ResultsTable.start accepts a missing row). /healthz runs its checks at once and
answers within its deadline even when the endpoint accepts connections and never answers.
"""
from __future__ import annotations

import io
import socket
import threading
import time

import pytest

from sightfleet.aws.dynamodb import ResultsTable
from sightfleet.aws.sqs import Queue
from sightfleet.config import Settings
from sightfleet.contracts import PROCESSING, Job
from sightfleet.errors import Unavailable
from sightfleet.resources import Resources
from tests.support import jpeg_bytes, keyed_client, unique_prefix
from tests.test_web_helpers import QueueFinisher, finish_job
from web_tier import create_app
from web_tier.health import UNHEALTHY_REASON
from web_tier.health_probe import HEALTH_DEADLINE_S
from web_tier.services import services_of


class RowCheckingQueue(Queue):
    """The real request queue; notes, as each job goes out, whether its result row already exists."""

    def __init__(self, settings, results):
        super().__init__(settings, settings.names.request_queue)
        self._results = results
        self.rows_at_send: list[list[dict]] = []

    def send(self, body: str) -> str:
        self.rows_at_send.append(self._results.get_many([Job.from_message(body).id]))
        return super().send(body)


class TableLostAtCreate(ResultsTable):
    """The real results table, out of reach for the QUEUED write only (as if the process died there)."""

    def create(self, result: dict) -> None:
        raise Unavailable(f"create result {result['id']}: the table is out of reach")


class ClaimedAtSend(Queue):
    """The real request queue, where a worker claims each job the moment it is sent."""

    def __init__(self, settings, resources):
        super().__init__(settings, settings.names.request_queue)
        self._resources = resources

    def send(self, body: str) -> str:
        message_id = super().send(body)
        [message] = self.receive(1, 1)
        job = Job.from_message(message.body)
        result = finish_job(self._resources, job, PROCESSING)  # claim only: marks it PROCESSING
        assert result["status"] == PROCESSING
        return message_id


def client_with(settings, **replaced):
    resources = Resources.connect(settings)
    for name, value in replaced.items():
        setattr(resources, name, value(settings, resources) if callable(value) else value)
    return keyed_client(create_app(settings, resources), resources), resources


@pytest.mark.parametrize("data", [jpeg_bytes(scale=0.3), jpeg_bytes("astronaut", scale=4.0, quality=98)],
                         ids=["inline", "s3-pointer"])
def test_the_job_goes_out_before_its_row_is_written(settings, data):
    client, resources = client_with(settings, requests=lambda s, r: RowCheckingQueue(s, r.results))
    reply = client.post("/api/images", data={"file": (io.BytesIO(data), "cat.jpg")})
    assert reply.status_code == 202
    # No row when the message left: a process killed at any point leaves either nothing or a sent job.
    assert resources.requests.rows_at_send == [[]]
    assert resources.results.get(reply.get_json()["images"][0]["id"])["status"] == "QUEUED"


def test_a_row_that_cannot_be_written_after_the_send_is_written_by_the_worker(settings):
    client, resources = client_with(settings, results=lambda s, r: TableLostAtCreate(s))
    finisher = QueueFinisher(resources, 2)  # plays the worker: claims from the job, writing the row
    reply = client.post("/api/images", data={"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg")})
    assert reply.status_code == 202  # accepted: the job is on the queue
    [image] = reply.get_json()["images"]
    assert client.get(image["status_url"]).status_code == 404  # no row until a worker claims the job
    finisher.start()
    waited = client.post("/api/images?wait=20", data={"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "two.jpg")})
    assert waited.status_code == 200, waited.data  # ?wait= keeps waiting until the worker's row is final
    assert waited.get_json()["images"][0]["status"] == "SUCCEEDED"
    finisher.join(20)
    assert client.get(image["status_url"]).get_json()["status"] == "SUCCEEDED"


def test_a_worker_faster_than_the_row_keeps_its_claim(settings):
    client, resources = client_with(settings, requests=lambda s, r: ClaimedAtSend(s, r))
    reply = client.post("/api/images", data={"file": (io.BytesIO(jpeg_bytes(scale=0.3)), "cat.jpg")})
    assert reply.status_code == 202
    image_id = reply.get_json()["images"][0]["id"]
    assert resources.results.get(image_id)["status"] == PROCESSING  # not put back to QUEUED


# --- /healthz against an endpoint that accepts connections and never answers -----------------------

class SilentEndpoint:
    """A loopback TCP listener that accepts every connection and never sends a byte."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                self._held.append(self._server.accept()[0])
            except socket.timeout:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._held:
            sock.close()
        self._server.close()


@pytest.fixture
def silent_endpoint():
    endpoint = SilentEndpoint()
    yield endpoint
    endpoint.close()


def health_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("health ")]


@pytest.mark.slow
def test_healthz_answers_in_time_when_the_endpoint_hangs(silent_endpoint):
    hung = Settings(endpoint_url=silent_endpoint.url, prefix=unique_prefix())
    before = set(health_threads())   # other tests' checks may still be hanging in this process
    client = create_app(hung, Resources.connect(hung)).test_client()  # anonymous: no account lookup to hang on
    for _ in range(2):
        started = time.monotonic()
        reply = client.get("/healthz")
        elapsed = time.monotonic() - started
        assert reply.status_code == 503 and reply.headers["Retry-After"]
        # Botocore alone would wait its read timeout (60 s by default) per attempt.
        assert HEALTH_DEADLINE_S - 0.5 < elapsed < HEALTH_DEADLINE_S + 10, elapsed
        assert reply.get_json()["reason"] == UNHEALTHY_REASON
        problems = services_of(client.application).health.problems()  # what the log and admins get
        assert len(problems) == 9 and all(f"no answer within {HEALTH_DEADLINE_S:g} s" in p for p in problems)
    # The second request joined the checks still hanging from the first: no new threads per poll.
    assert len(set(health_threads()) - before) <= 9


def test_healthz_reports_each_resource_that_is_gone(admin_client, settings):
    client = admin_client  # only admins read which resource is gone
    import boto3
    assert client.get("/healthz").get_json() == {"status": "ok"}
    boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region).delete_bucket(
        Bucket=settings.names.output_bucket)
    services_of(client.application).health.forget()   # a verdict is reused for 1.5 s
    reply = client.get("/healthz")
    assert reply.status_code == 503
    [problem] = reply.get_json()["problems"]
    assert problem.startswith("output bucket: ")
