"""Webhooks on the local endpoint with a real receiver on loopback: signed, retried, deduplicable, disabled, safe."""
from __future__ import annotations

import io
import json
import signal
import threading

import pytest

from sightfleet.aws.webhooks import WebhookTable
from sightfleet.contracts import DELETED, SUCCEEDED, response_message
from sightfleet.secretbox import SecretBox
from sightfleet.webhooks import (DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, WebhookError, address_refusal,
                                 check_url, fate, verify)
from tests.support import jpeg_bytes, start_worker_process, wait_for
from tests.test_web_helpers import QueueFinisher
from tests.webhook_receiver import Receiver
from web_tier.webhooks.deliver import Deliverer
from web_tier.webhooks.http import post
from web_tier.webhooks.service import Webhooks

KEY = "a credentials key of 32 characters or more"


@pytest.fixture
def settings(settings_factory):
    return settings_factory(webhook_backoff_s="1,1", webhook_visibility_s=2, credentials_key=KEY)


@pytest.fixture
def service(settings) -> Webhooks:
    return Webhooks(WebhookTable(settings), SecretBox(KEY), local=True)


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def running(settings, resources):
    """The deliverer's two loops, in this process, until the test ends."""
    stop = threading.Event()
    deliverer = Deliverer(settings, resources, SecretBox(KEY), stop)
    loops = [threading.Thread(target=deliverer.fan_out_forever, daemon=True),
             threading.Thread(target=deliverer.deliver_forever, daemon=True)]
    for loop in loops:
        loop.start()
    yield deliverer
    stop.set()
    for loop in loops:
        loop.join(timeout=15)


def finished(client, resources, name: str = "cat.jpg") -> dict:
    """Upload through the API, finish as a worker does, and announce it on the response queue as a worker does."""
    image = client.post("/api/images", data={"file": (io.BytesIO(jpeg_bytes()), name)}).get_json()["images"][0]
    finisher = QueueFinisher(resources, 1)
    finisher.run()
    result = resources.results.get(image["id"])
    resources.responses.send(response_message(result))
    return result


def test_a_success_is_delivered_signed_with_the_endpoints_secret(client, resources, receiver, running):
    made = client.post("/api/webhooks", json={"url": receiver.url, "events": ["image.succeeded"]})
    assert made.status_code == 201
    secret = made.get_json()["secret"]
    result = finished(client, resources)
    [got] = wait_for(lambda: receiver.received, 20, what="the delivery")
    assert got.headers[EVENT_HEADER] == "image.succeeded" and got.headers[DELIVERY_HEADER].startswith("dlv_")
    assert verify(secret, got.body, got.headers[SIGNATURE_HEADER])
    assert not verify("whsec_another", got.body, got.headers[SIGNATURE_HEADER])
    assert not verify(secret, got.body + b" ", got.headers[SIGNATURE_HEADER])
    body = json.loads(got.body)
    assert body["event"] == "image.succeeded" and body["image"]["id"] == result["id"]
    assert body["image"]["status"] == SUCCEEDED and body["image"]["top_label"] == "cat"
    hook = client.get(f"/api/webhooks/{made.get_json()['webhook']['hook_id']}").get_json()
    assert hook["deliveries"][0]["status"] == "delivered" and hook["deliveries"][0]["code"] == 200


def test_a_failing_receiver_gets_retries_with_the_same_delivery_id(client, resources, running):
    receiver = Receiver(answers=[500, 503])
    try:
        made = client.post("/api/webhooks", json={"url": receiver.url}).get_json()
        finished(client, resources)
        wait_for(lambda: len(receiver.received) == 3, 30, what="two retries")
        assert len({r.headers[DELIVERY_HEADER] for r in receiver.received}) == 1   # one delivery, three attempts
        hook = wait_for(lambda: client.get(f"/api/webhooks/{made['webhook']['hook_id']}").get_json(), 5)
        assert hook["status"] == "active" and hook["failures"] == 0
        assert hook["deliveries"][0]["attempts"] == 3 and hook["deliveries"][0]["status"] == "delivered"
    finally:
        receiver.close()


def test_an_endpoint_failing_every_attempt_is_disabled_with_a_reason(client, resources, running):
    receiver = Receiver(answers=[500] * 10)
    try:
        made = client.post("/api/webhooks", json={"url": receiver.url}).get_json()
        hook_id = made["webhook"]["hook_id"]
        finished(client, resources)
        hook = wait_for(lambda: (h := client.get(f"/api/webhooks/{hook_id}").get_json())["status"] == "disabled"
                        and h, 30, what="the endpoint disabled")
        assert "500" in hook["disabled_reason"] and len(receiver.received) == 3
        finished(client, resources, "another.jpg")   # a disabled endpoint gets nothing more
        assert client.post(f"/api/webhooks/{hook_id}/enable").get_json()["status"] == "active"
    finally:
        receiver.close()


def test_a_deletion_is_announced(client, resources, receiver, running):
    client.post("/api/webhooks", json={"url": receiver.url, "events": ["image.deleted"]})
    result = finished(client, resources)
    assert client.delete(f"/api/images/{result['id']}").status_code == 204
    [got] = wait_for(lambda: receiver.received, 20, what="the deletion's delivery")
    assert json.loads(got.body)["image"] == {"id": result["id"], "status": DELETED}


def test_a_per_request_callback_is_signed_with_the_callback_secret(client, resources, receiver, running):
    refused = client.post(f"/api/images?callback_url={receiver.url}", data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg")})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "BAD_CALLBACK"
    secret = client.post("/api/webhooks/callback-secret").get_json()["secret"]
    image = client.post(f"/api/images?callback_url={receiver.url}",
                        data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg")}).get_json()["images"][0]
    QueueFinisher(resources, 1).run()
    resources.responses.send(response_message(resources.results.get(image["id"])))
    [got] = wait_for(lambda: receiver.received, 20, what="the callback")
    assert verify(secret, got.body, got.headers[SIGNATURE_HEADER]) and json.loads(got.body)["image"]["id"] == image["id"]


def test_another_owners_endpoints_and_callbacks_are_never_reached(client, app, resources, receiver, running):
    from tests.support import keyed_client
    other = keyed_client(app, resources, "mallory")
    other.post("/api/webhooks", json={"url": receiver.url})
    finished(client, resources)
    assert other.get("/api/webhooks").get_json()["webhooks"][0]["deliveries"] == []
    assert client.get(f"/api/webhooks/{other.get('/api/webhooks').get_json()['webhooks'][0]['hook_id']}"
                      ).status_code == 404
    assert receiver.received == []


@pytest.mark.parametrize("url", [
    "http://example.com/hook", "https://10.0.0.8/hook", "https://169.254.169.254/latest/meta-data/",
    "https://[::ffff:169.254.169.254]/x", "https://[fe80::1]/x", "ftp://example.com/", "https://user:pw@example.com/",
    "https://192.168.1.1/", "https://0.0.0.0/", "", "https://" + "a" * 2000 + ".com/"])
def test_urls_that_could_reach_private_or_metadata_addresses_are_refused(client, url):
    reply = client.post("/api/webhooks", json={"url": url})
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "BAD_WEBHOOK"
    with pytest.raises(WebhookError):
        check_url(url, local=True)


def test_a_name_resolving_to_a_refused_address_is_not_called(receiver):
    answer = post(receiver.url.replace("127.0.0.1", "localhost"), b"{}", {}, allow_private=False,
                  allow_loopback=False)
    assert answer.status == 0 and "loopback" in answer.detail and receiver.received == []
    assert address_refusal("169.254.169.254", allow_private=True, allow_loopback=True)   # never, whatever is allowed
    assert address_refusal("10.1.2.3", allow_private=True, allow_loopback=False) is None
    assert address_refusal("93.184.216.34", allow_private=False, allow_loopback=False) is None


def test_a_receivers_answer_is_bounded_in_time_and_size():
    slow = Receiver(delay_s=12)
    try:
        answer = post(slow.url, b"{}", {}, allow_private=False, allow_loopback=True)
        assert answer.status == 0 and "Timeout" in answer.detail
    finally:
        slow.close()


@pytest.mark.parametrize("ok, attempt, expected", [
    (True, 0, (True, None, False)), (True, 5, (True, None, False)), (False, 0, (False, 1, False)),
    (False, 1, (False, 2, False)), (False, 2, (True, None, True))])
def test_a_deliverys_fate_after_each_attempt(ok, attempt, expected):
    step = fate(ok, attempt, (1, 2))
    assert (step.done, step.delay_s, step.give_up) == expected


@pytest.mark.slow
def test_a_deliverer_killed_during_a_delivery_loses_nothing(client, resources, settings, tmp_path):
    receiver = Receiver(delay_s=4)   # the first attempt is still waiting for its answer when the deliverer dies
    try:
        client.post("/api/webhooks", json={"url": receiver.url})
        env = {"SIGHTFLEET_CREDENTIALS_KEY": KEY, "SIGHTFLEET_WEBHOOK_VISIBILITY_S": "2",
               "SIGHTFLEET_WEBHOOK_BACKOFF_S": "1,1"}
        first = start_worker_process(settings, "i-none", tmp_path / "first.log", module="web_tier.webhooks", **env)
        finished(client, resources)
        wait_for(lambda: receiver.received, 30, what="the first attempt to arrive")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        receiver.delay_s = 0
        second = start_worker_process(settings, "i-none", tmp_path / "second.log", module="web_tier.webhooks", **env)
        try:
            wait_for(lambda: len(receiver.received) >= 2, 40, what="the delivery made again")
            ids = {r.headers[DELIVERY_HEADER] for r in receiver.received}
            assert len(ids) == 1   # the same delivery, identifiable as a duplicate
        finally:
            second.terminate()
            second.wait(timeout=20)
    finally:
        receiver.close()
