"""Liveness of the AWS modules: an endpoint that hangs, refuses, throttles or fails ends every call
with Unavailable within the bound session.py states, and long polls still outlast their wait.

The endpoints here are real sockets on loopback (a listener that accepts and never answers, a
port nobody listens on, an HTTP server with one canned answer), given to Settings as
endpoint_url like moto's; boto3 itself is not replaced.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sightfleet.aws import session
from sightfleet.aws.cloudwatch import Metrics
from sightfleet.aws.dynamodb import FleetTable, ResultsTable
from sightfleet.aws.ec2 import Fleet
from sightfleet.aws.s3 import Bucket
from sightfleet.aws.session import (ATTEMPTS, CALL_WORST_CASE_S, LONG_POLL_MAX_WAIT_S, LONG_POLL_WORST_CASE_S,
                                    READ_TIMEOUT_S, client)
from sightfleet.aws.sqs import Queue
from sightfleet.config import Settings
from sightfleet.errors import Invalid, Unavailable
from tests.support import AWS_TEST_ENV, free_port

pytestmark = pytest.mark.slow  # waits out timeouts by design

# Generous on a busy machine: the bound itself plus time to be scheduled.
SLACK_S = 20

ONE_CALL_PER_MODULE = {
    "sqs": lambda s: Queue(s, "q").counts(),
    "s3": lambda s: Bucket(s, "bucket").get("k"),
    "dynamodb resource": lambda s: ResultsTable(s).get("a" * 32),
    "dynamodb fleet": lambda s: FleetTable(s).put("worker", "i-1", {}),
    "ec2": lambda s: Fleet(s).instances(),
    "cloudwatch": lambda s: Metrics(s).put({"m": 1.0}),
}


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    """Test credentials, so every call really goes out (none missing to fail it early)."""
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)


class SilentListener:
    """A loopback TCP listener that accepts every connection and never answers."""

    def __init__(self):
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return   # closed
            self.accepted.append(conn)   # held open, never read from or written to

    def close(self) -> None:
        self._sock.close()
        for conn in self.accepted:
            conn.close()


class Canned(BaseHTTPRequestHandler):
    """Answers every request with the server's one status and JSON body."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = self.server.answer
        self.server.requests += 1
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned_endpoint():
    servers = []

    def serve(status: int, body: dict):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
        server.answer, server.requests = (status, body), 0
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def outcomes(calls: dict, bound_s: float) -> dict[str, tuple[BaseException | None, float]]:
    """Run the calls side by side; each one's exception and seconds taken. Fails past bound_s."""
    found: dict = {}

    def run(name, call):
        started = time.monotonic()
        try:
            call()
            found[name] = (None, time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever came out
            found[name] = (exc, time.monotonic() - started)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in calls.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + bound_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sorted(set(calls) - set(found))
    assert not stuck, f"still running after {bound_s:.0f} s: {stuck}"
    return found


def test_the_stated_bound_is_the_computed_one():
    assert f"CALL_WORST_CASE_S ({CALL_WORST_CASE_S:g} s)" in session.__doc__
    assert f"LONG_POLL_WORST_CASE_S ({LONG_POLL_WORST_CASE_S:g} s)" in session.__doc__
    assert CALL_WORST_CASE_S < 60 and LONG_POLL_WORST_CASE_S < 90


def test_every_client_has_the_bounded_configuration(settings):
    for service in ("sqs", "s3", "dynamodb", "ec2", "cloudwatch"):
        config = client(settings, service).meta.config
        assert (config.connect_timeout, config.read_timeout) == (session.CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
        assert config.retries == {"total_max_attempts": ATTEMPTS, "mode": session.RETRY_MODE}
    assert session.resource(settings, "dynamodb").meta.client.meta.config.read_timeout == READ_TIMEOUT_S
    receiver = client(settings, "sqs", long_poll=True).meta.config
    assert receiver.read_timeout > LONG_POLL_MAX_WAIT_S
    assert receiver.retries["total_max_attempts"] == session.LONG_POLL_ATTEMPTS


def test_an_endpoint_that_never_answers_is_unavailable_within_the_bound():
    listener = SilentListener()
    settings = Settings(endpoint_url=listener.url, prefix="hung")
    try:
        found = outcomes({name: lambda call=call: call(settings) for name, call in ONE_CALL_PER_MODULE.items()},
                         CALL_WORST_CASE_S + SLACK_S)
    finally:
        listener.close()
    for name, (exc, took_s) in found.items():
        assert isinstance(exc, Unavailable), (name, exc)
        assert "timeout" in str(exc).lower(), (name, exc)
        # Each attempt waited out its read timeout before the next one.
        assert took_s >= ATTEMPTS * READ_TIMEOUT_S, (name, took_s)
    assert len(listener.accepted) >= len(found) * ATTEMPTS   # retried, on a fresh connection each time


def test_a_port_that_refuses_connections_is_unavailable_within_the_bound():
    settings = Settings(endpoint_url=f"http://127.0.0.1:{free_port()}", prefix="refused")
    calls = {name: lambda call=call: call(settings) for name, call in ONE_CALL_PER_MODULE.items()}
    calls["sqs receive"] = lambda: Queue(settings, "q").receive(10, LONG_POLL_MAX_WAIT_S)
    for name, (exc, _) in outcomes(calls, CALL_WORST_CASE_S + SLACK_S).items():
        assert isinstance(exc, Unavailable), (name, exc)
        assert "Could not connect" in str(exc), (name, exc)


@pytest.mark.parametrize("status, body", [
    (400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow down"}),
    (400, {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "message": "hot"}),
    (500, {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "oops"}),
    (503, {"__type": "ServiceUnavailable", "message": "later"}),
], ids=["throttling", "throughput", "500", "503"])
def test_throttling_and_server_errors_stay_unavailable_after_retries(canned_endpoint, status, body):
    server, url = canned_endpoint(status, body)
    with pytest.raises(Unavailable):
        ResultsTable(Settings(endpoint_url=url, prefix="canned")).get("a" * 32)
    assert server.requests == ATTEMPTS


def test_a_validation_error_is_not_retried(canned_endpoint):
    server, url = canned_endpoint(400, {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
                                        "message": "never"})
    with pytest.raises(Invalid, match="never"):
        ResultsTable(Settings(endpoint_url=url, prefix="canned")).get("a" * 32)
    assert server.requests == 1


def test_a_long_poll_longer_than_the_read_timeout_waits_it_out(resources):
    """The receiving client outlasts SQS's wait; the ordinary client's read timeout would cut it short."""
    wait_s = int(READ_TIMEOUT_S) + 2
    started = time.monotonic()
    assert resources.requests.receive(1, wait_s) == []
    assert time.monotonic() - started >= wait_s - 1
