"""Headless Chromium: a person makes an access key for the AWS tools and a webhook endpoint, and sees each secret once;
the webhook then receives a photo's result, and its delivery shows on the page."""
from __future__ import annotations

import json
import uuid

import boto3
import requests

from sightfleet.webhooks import SIGNATURE_HEADER, verify
from tests.browser import chromium, requires_chromium, screenshot
from tests.support import jpeg_bytes, wait_for
from tests.test_browser_signin import PASSWORD
from tests.test_browser_upload import wait_until
from tests.webhook_receiver import Receiver


def sign_in(driver, web_url: str, name: str) -> None:
    driver.get(f"{web_url}/signin")
    driver.find_element("name", "name").send_keys(name)
    driver.find_element("name", "password").send_keys(PASSWORD)
    driver.find_element("css selector", ".signin-form button").click()
    wait_until(driver, lambda d: "/signin" not in d.current_url, 10, "the sign-in")


@requires_chromium
def test_access_key_and_webhook_made_in_the_browser_work_with_real_clients(local_stack):
    name = f"integrator-{uuid.uuid4().hex[:6]}"
    local_stack.accounts().create(name, password=PASSWORD)
    receiver = Receiver()
    try:
        with chromium() as driver:
            sign_in(driver, local_stack.web_url, name)
            driver.get(f"{local_stack.web_url}/keys")
            driver.find_element("css selector", "#access-keys input[name=label]").send_keys("my laptop")
            driver.find_element("css selector", "#access-keys button[type=submit].button:not(.secondary)").click()
            shown = wait_until(driver, lambda d: d.find_elements("id", "new-access-key"), 10, "the new access key")
            exports = dict(line.removeprefix("export ").split("=", 1) for line in shown[0].text.splitlines()
                           if line.startswith("export "))
            screenshot(driver, "keys-access-key")

            driver.get(f"{local_stack.web_url}/webhooks")
            driver.find_element("name", "url").send_keys(receiver.url)
            driver.find_element("css selector", ".key-form button").click()
            secret = wait_until(driver, lambda d: d.find_elements("id", "new-webhook-secret"), 10,
                                "the webhook's secret")[0].text
            screenshot(driver, "webhooks-new")

            client = boto3.client("rekognition", endpoint_url=local_stack.web_url, region_name="us-east-1",
                                  aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                                  aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
            accounts_key = local_stack.accounts().issue_key(local_stack.accounts().get(name)).key
            requests.post(f"{local_stack.web_url}/api/images", files={"file": ("c.jpg", jpeg_bytes(), "image/jpeg")},
                          headers={"Authorization": f"Bearer {accounts_key}"})
            [got] = wait_for(lambda: receiver.received, 60, what="the delivery")
            assert verify(secret, got.body, got.headers[SIGNATURE_HEADER])
            assert json.loads(got.body)["event"] == "image.succeeded"
            assert any("cat" in label["Name"].lower()
                       for label in client.detect_labels(Image={"Bytes": jpeg_bytes()})["Labels"])

            driver.get(f"{local_stack.web_url}/webhooks")
            driver.find_element("css selector", "details summary").click()
            rows = wait_until(driver, lambda d: d.find_elements("css selector", "table.deliveries tbody tr"), 10,
                              "the delivery log")
            assert "delivered" in rows[0].text and "200" in rows[0].text
            assert secret not in driver.page_source
            screenshot(driver, "webhooks-log")
    finally:
        receiver.close()
