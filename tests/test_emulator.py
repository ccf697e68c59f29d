"""The local AWS endpoint as scripts/run starts it: moto's application behind gunicorn with keep-alive."""
from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlparse

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from sightfleet.config import Settings
from sightfleet.emulator import _Dispatcher
from sightfleet.resources import Resources, provision
from tests.support import start_moto, unique_prefix


def _list_queues(connection: http.client.HTTPConnection) -> http.client.HTTPResponse:
    connection.request("POST", "/", body="{}", headers={
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ListQueues",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    response = connection.getresponse()
    response.read()
    return response


def test_connections_are_kept_alive(moto_server):
    address = urlparse(moto_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    first = _list_queues(connection)
    sock = connection.sock
    second = _list_queues(connection)
    assert first.status == second.status == 200
    assert (first.getheader("Connection") or "").lower() != "close"
    assert connection.sock is sock  # the second request went over the same TCP connection
    connection.close()


@pytest.mark.parametrize("host", [None, "moto_api", "127.0.0.1:4566", "s3.amazonaws.com",
                                  "bucket.s3.amazonaws.com", "sqs.us-east-1.amazonaws.com",
                                  "dynamodb.us-east-1.amazonaws.com", "ec2.us-east-1.amazonaws.com"])
def test_remembered_backends_are_the_ones_moto_finds(host):
    remembering, plain = _Dispatcher(), DomainDispatcherApplication(create_backend_app)
    assert remembering.get_backend_for_host(host) == plain.get_backend_for_host(host)
    assert remembering.get_backend_for_host(host) == plain.get_backend_for_host(host)  # from memory now


def test_every_service_answers_through_one_endpoint(settings, resources):
    resources.outputs.put("k/one.txt", b"hello", "text/plain")
    assert resources.outputs.get("k/one.txt") == b"hello"
    resources.requests.send("ping")
    assert [m.body for m in resources.requests.receive(1, 1)] == ["ping"]
    resources.fleet_log.put("worker", "i-1", {"state": "idle"})
    assert [d["state"] for d in resources.fleet_log.all("worker")] == ["idle"]
    assert resources.fleet.instances() == []


def test_stops_promptly_with_a_long_poll_open():
    proc, url = start_moto()
    try:
        settings = Settings(endpoint_url=url, prefix=unique_prefix())
        provision(settings)
        queue = Resources.connect(settings).requests
        polling = threading.Thread(target=lambda: _quietly(queue.receive, 1, 20), daemon=True)
        polling.start()
        time.sleep(1)
        started = time.monotonic()
        proc.terminate()
        proc.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()


def _quietly(call, *args):
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - the server going away mid-poll is the point of the test
        pass
