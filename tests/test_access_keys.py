"""Access keys for SigV4 clients: issued on the keys page, stored sealed, revocable, and good only where SigV4 is."""
from __future__ import annotations

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sightfleet.aws.session import resource
from sightfleet.secretbox import SealError, SecretBox
from web_tier.accounts import Accounts
from tests.test_auth import PASSWORD, csrf_of, sign_in
from web_tier.services import services_of

KEY = "k" * 32


@pytest.fixture
def accounts(app) -> Accounts:
    return services_of(app).accounts


@pytest.fixture
def person(app, accounts):
    accounts.create("ada", password=PASSWORD)
    browser = app.test_client()
    assert sign_in(browser, "ada").status_code == 302
    return browser


def new_access_key(person) -> tuple[str, str]:
    page = person.post("/keys/access", data={"label": "laptop sdk", "csrf_token": csrf_of(person)})
    assert page.status_code == 200
    shown = page.data.decode().split('<pre id="new-access-key">')[1].split("</pre>")[0]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in shown.splitlines() if "=" in line
                   and line.startswith("export"))
    return exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"]


def test_the_keys_page_issues_an_access_key_once_and_revokes_it(person, accounts):
    key_id, secret = new_access_key(person)
    principal, opened = accounts.by_access_key(key_id)
    assert principal.name == "ada" and opened == secret and len(key_id) == 20 and len(secret) == 40
    listing = person.get("/keys").data.decode()
    assert key_id in listing and secret not in listing and "laptop sdk" in listing
    assert person.post(f"/keys/{key_id}/revoke", data={"csrf_token": csrf_of(person)}).status_code == 302
    assert accounts.by_access_key(key_id) is None


def test_the_secret_is_stored_only_sealed(person, accounts, settings):
    key_id, secret = new_access_key(person)
    items = resource(settings, "dynamodb").Table(settings.names.accounts_table).scan()["Items"]
    stored = repr(items)
    assert key_id in stored and secret not in stored
    [item] = [i for i in items if i.get("key_id") == key_id]
    with pytest.raises(SealError):
        SecretBox("another credentials key, 32 chars!").open(item["secret_sealed"], bound_to=key_id)
    with pytest.raises(SealError):   # a sealed secret moved onto another key's item does not open
        accounts._box.open(item["secret_sealed"], bound_to="SFAKAAAAAAAAAAAAAAAA")  # noqa: SLF001


def test_an_api_key_cannot_mint_access_keys(client):
    assert client.post("/keys/access", data={"label": "x"}).status_code == 403


def test_deleting_an_account_revokes_its_access_keys(person, accounts):
    key_id, _ = new_access_key(person)
    accounts.delete("ada")
    assert accounts.by_access_key(key_id) is None


def test_a_sigv4_signature_is_taken_on_the_rekognition_endpoint_only(person, app):
    key_id, secret = new_access_key(person)
    request = AWSRequest(method="GET", url="http://localhost/api/images", headers={})
    SigV4Auth(Credentials(key_id, secret), "rekognition", "us-east-1").add_auth(request)
    reply = app.test_client().get("/api/images", headers=dict(request.headers.items()))
    assert reply.status_code == 401 and reply.get_json()["error"]["code"] == "BAD_CREDENTIALS"


def test_sealing_round_trips_and_refuses_damage():
    box = SecretBox(KEY)
    sealed = box.seal("the secret", bound_to="SFAK1")
    assert sealed != box.seal("the secret", bound_to="SFAK1")   # a fresh nonce each time
    assert box.open(sealed, bound_to="SFAK1") == "the secret"
    for damaged in (sealed[:-4] + "AAAA", "v2:" + sealed[3:], "v1:not base64!", ""):
        with pytest.raises(SealError):
            box.open(damaged, bound_to="SFAK1")
    with pytest.raises(ValueError):
        SecretBox("short")
