"""Webhooks on the live stack: a real worker's result reaches a real receiver, signed, as the CLI registered it."""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from sightfleet.webhooks import SIGNATURE_HEADER, verify
from tests.support import jpeg_bytes, wait_for
from tests.test_rekognition_e2e import accounts_cli
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e


def test_a_photo_processed_by_the_fleet_is_pushed_to_the_registered_endpoint(local_stack):
    name = f"hooked-{uuid.uuid4().hex[:6]}"
    key = accounts_cli(local_stack, "create", name)[-1]
    receiver = Receiver()
    try:
        secret = accounts_cli(local_stack, "webhook-add", name, receiver.url)[-1]
        image = requests.post(f"{local_stack.web_url}/api/images", files={"file": ("cat.jpg", jpeg_bytes(), "image/jpeg")},
                              headers={"Authorization": f"Bearer {key}"}).json()["images"][0]
        [got] = wait_for(lambda: receiver.received, 60, what="the webhook delivery")
        assert verify(secret, got.body, got.headers[SIGNATURE_HEADER])
        body = json.loads(got.body)
        assert body["event"] == "image.succeeded" and body["image"]["id"] == image["id"]
        assert any("cat" in label["Name"].lower() for label in body["image"]["labels"])
        listed = accounts_cli(local_stack, "webhooks", name)
        assert "delivered 200" in listed[0]
        assert requests.delete(f"{local_stack.web_url}/api/images/{image['id']}",
                               headers={"Authorization": f"Bearer {key}"}).status_code == 204
        wait_for(lambda: len(receiver.received) == 2, 30, what="the deletion's delivery")
        deleted = json.loads(receiver.received[1].body)
        assert deleted["event"] == "image.deleted" and deleted["image"] == {"id": image["id"], "status": "DELETED"}
    finally:
        receiver.close()
