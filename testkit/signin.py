"""Signing in for tests: accounts' API keys on Flask test clients, one-time links in a browser or a session."""
from __future__ import annotations

import html
import re

import requests


def sign_in_with_key(client, resources, name: str, admin: bool = False) -> str:
    """Create an account on resources and make the Flask test client send its API key; returns the key."""
    from sightfleet.accounts import Accounts
    _, issued = Accounts(resources.accounts).create(name, admin=admin)
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {issued.key}"
    client.api_key = issued.key
    return issued.key


def keyed_client(app, resources, name: str = "tester", admin: bool = False):
    """A test client of app that sends a new account's API key (the account is made on resources)."""
    client = app.test_client()
    sign_in_with_key(client, resources, name, admin)
    return client


def key_sending_client_class(key: str):
    """A Flask test client class whose clients send this API key (for `app.test_client_class`)."""
    from flask.testing import FlaskClient

    class KeySendingClient(FlaskClient):
        api_key = key

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return KeySendingClient


def open_sign_in_link(driver, url: str) -> None:
    """In a browser, open a one-time sign-in link and press its button (a GET alone signs nobody in)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    button = driver.find_element("id", "use-sign-in-link")
    button.click()
    # click() returns before the POST's navigation: wait until the link page is gone and the landing page
    # has loaded, or a caller's next step could run on the page that is about to go away.
    wait = WebDriverWait(driver, 20, poll_frequency=0.1)
    wait.until(expected_conditions.staleness_of(button), message="the sign-in link page to go away")
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete",
               message="the page after sign-in to load")


def redeem_sign_in_link(session: requests.Session, url: str, **kwargs) -> requests.Response:
    """What a browser does with a one-time link: open its page, then post its form (token, next, CSRF)."""
    page = session.get(url, timeout=10).text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    action = url.split("/signin/link")[0] + "/signin/link"
    return session.post(action, data={k: html.unescape(v) for k, v in fields.items()}, timeout=10, **kwargs)


def sign_in_url(web_url: str, accounts, name: str, next_path: str = "/") -> str:
    """The one-time sign-in link of `name` (made by accounts, a sightfleet.accounts.Accounts), opening next_path."""
    from urllib.parse import urlencode
    return f"{web_url}/signin/link?" + urlencode({"token": accounts.make_link(name), "next": next_path})


def bearer(key: str) -> dict:
    """The header a program sends with an API key."""
    return {"Authorization": f"Bearer {key}"}
