"""Accounts: the table on the local endpoint, the service (keys, passwords, links) and `python -m web_tier.accounts`."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sightfleet.aws.accounts import AccountsTable
from sightfleet.errors import Unavailable
from sightfleet.memory import memory_resources
from sightfleet.config import Settings
from sightfleet.local_access import ENV_FILE_VAR
from tests.support import REPO, free_port, running_stack_env_file
from web_tier.accounts import AccountError, Accounts, secret_hash

pytestmark = pytest.mark.slow  # the accounts command run as a process, argon2 hashes


@pytest.fixture
def accounts(settings) -> Accounts:
    return Accounts(AccountsTable(settings))


def cli(settings, *args: str, stdin: str = "", endpoint: str | None = None,
        bare: bool = False, env_file: str = "") -> subprocess.CompletedProcess:
    """Run the command line; bare: from a shell with no AWS credentials, as scripts/run's hint is pasted."""
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint or settings.endpoint_url, "SIGHTFLEET_PREFIX": settings.prefix,
           "PYTHONPATH": str(REPO), ENV_FILE_VAR: env_file}
    if bare:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
            env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "web_tier.accounts", *args], env=env, cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_a_key_acts_for_its_account_and_is_stored_only_as_its_hash(accounts, settings):
    account, issued = accounts.create("Alice")
    assert account["name"] == "alice" and issued.key.startswith("sfk_") and len(issued.key) > 40
    principal = accounts.by_key(issued.key)
    assert (principal.owner, principal.name, principal.admin, principal.via) == (account["account_id"], "alice",
                                                                                 False, "key")
    stored = AccountsTable(settings).get_key(secret_hash(issued.key))
    assert stored["key_id"] == issued.key_id and issued.key not in str(stored)
    assert accounts.by_key(issued.key + "x") is None and accounts.by_key("") is None


def test_a_revoked_key_stops_at_once(accounts):
    account, issued = accounts.create("bob")
    other = accounts.issue_key(account, "second")
    assert accounts.by_key(issued.key) is not None
    assert accounts.revoke(issued.key_id)
    assert accounts.by_key(issued.key) is None  # the very next lookup: no cache in between
    assert accounts.by_key(other.key) is not None
    assert not accounts.revoke(issued.key_id)


def test_revoking_within_an_account_cannot_touch_another_accounts_key(accounts):
    alice, alice_key = accounts.create("alice")
    bob, _ = accounts.create("bob")
    assert not accounts.revoke(alice_key.key_id, bob)
    assert accounts.by_key(alice_key.key) is not None
    assert accounts.revoke(alice_key.key_id, alice)


def test_a_name_is_taken_once_and_must_be_a_name(accounts):
    accounts.create("carol")
    with pytest.raises(AccountError, match="exists already"):
        accounts.create("Carol")
    for bad in ("", "a b", "-x", "anonymous", "x" * 65, "<script>"):
        with pytest.raises(AccountError):
            accounts.create(bad)


def test_deleting_an_account_ends_its_keys_and_a_new_account_of_that_name_is_someone_else(accounts):
    old, issued = accounts.create("dave")
    assert accounts.delete("dave") == 1
    assert accounts.by_key(issued.key) is None
    new, _ = accounts.create("dave")
    assert new["account_id"] != old["account_id"]
    assert accounts.by_session("dave", old["account_id"], old["session_epoch"]) is None
    assert accounts.by_session("dave", new["account_id"], new["session_epoch"]).owner == new["account_id"]


def test_passwords_are_argon2_hashed_and_checked(accounts, settings):
    accounts.create("erin", password="correct horse")
    stored = AccountsTable(settings).get_account("erin")["password_hash"]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert accounts.by_password("erin", "correct horse").name == "erin"
    assert accounts.by_password("ERIN ", "correct horse").name == "erin"
    assert accounts.by_password("erin", "wrong horse") is None
    assert accounts.by_password("nobody", "correct horse") is None
    accounts.create("frank")  # no password: only keys and links sign it in
    assert accounts.by_password("frank", "") is None
    with pytest.raises(AccountError, match="at least"):
        accounts.set_password("frank", "short")


def test_an_unknown_name_costs_an_argon2_verification_too(accounts, monkeypatch):
    from sightfleet import accounts as service
    verified = []
    real = service._hasher

    class Counting:
        def verify(self, stored, password):
            verified.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(service, "_hasher", Counting())
    assert accounts.by_password("nobody-here", "whatever") is None
    assert accounts.by_password("not a valid name!", "whatever") is None
    assert len(verified) == 2


def test_a_sign_in_link_works_once_and_not_after_it_expires(accounts):
    accounts.create("gina", admin=True)
    token = accounts.make_link("gina")
    principal = accounts.redeem_link(token)
    assert (principal.name, principal.admin, principal.via) == ("gina", True, "session")
    assert accounts.redeem_link(token) is None
    expired = accounts.make_link("gina", ttl_s=-1)
    assert accounts.redeem_link(expired) is None
    assert accounts.redeem_link("never-issued") is None
    with pytest.raises(AccountError, match="no account"):
        accounts.make_link("nobody")


def test_an_unreachable_accounts_table_raises_the_projects_error():
    resources, faults = memory_resources(Settings(prefix="mem"))
    faults.fail("accounts.get_key")
    with pytest.raises(Unavailable):
        Accounts(resources.accounts).by_key("sfk_anything")


def test_the_cli_creates_lists_revokes_and_deletes(settings, accounts):
    made = cli(settings, "create", "hank", "--admin")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    principal = accounts.by_key(key)
    assert principal.name == "hank" and principal.admin
    listed = cli(settings, "list")
    assert listed.returncode == 0 and "hank\tadmin" in listed.stdout
    key_id = accounts.keys(accounts.get("hank"))[0]["key_id"]
    assert key_id in listed.stdout and key not in listed.stdout
    second = cli(settings, "key", "hank", "--label", "ci").stdout.strip().splitlines()[-1]
    revoked = cli(settings, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert accounts.by_key(key) is None and accounts.by_key(second) is not None
    deleted = cli(settings, "delete", "hank")
    assert deleted.returncode == 0, deleted.stderr
    assert accounts.by_key(second) is None and "hank" not in cli(settings, "list").stdout


def test_the_cli_sets_a_password_and_makes_a_link(settings, accounts):
    made = cli(settings, "create", "ivy", "--password", stdin="a long password\n")
    assert made.returncode == 0, made.stderr
    assert accounts.by_password("ivy", "a long password").name == "ivy"
    link = cli(settings, "link", "ivy", "--url", "http://example.test:8000/")
    assert link.returncode == 0, link.stderr
    url = link.stdout.strip().splitlines()[-1]
    assert url.startswith("http://example.test:8000/signin/link?token=")
    assert accounts.redeem_link(url.split("token=", 1)[1]).name == "ivy"


@pytest.mark.parametrize("args, message", [
    (("create", "dup"), "exists already"),
    (("delete", "ghost"), "no account named 'ghost'"),
    (("revoke", "0123abcd"), "no API key with id"),
    (("link", "ghost"), "no account named"),
    (("create", "bad name"), "user name is"),
])
def test_the_cli_refuses_clearly(settings, accounts, args, message):
    accounts.create("dup")
    done = cli(settings, *args)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""


def test_the_cli_says_when_the_endpoint_is_unreachable(settings):
    started = time.monotonic()
    done = cli(settings, "list", endpoint=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "cannot reach the stack's DynamoDB" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 100


def test_the_cli_says_when_the_stack_is_not_provisioned(settings):
    done = cli(settings.with_changes(prefix="never-provisioned"), "list")
    assert done.returncode == 2 and "does not exist" in done.stderr and "scripts/run" in done.stderr


def test_the_cli_finds_the_running_stacks_credentials_by_itself(settings, accounts, tmp_path):
    accounts.create("jill")
    alone = cli(settings, "link", "jill", bare=True, env_file=str(tmp_path / "absent.env"))
    assert alone.returncode == 2 and "credentials" in alone.stderr   # the endpoint takes no unsigned call
    with running_stack_env_file(tmp_path / "local-aws.env", settings.endpoint_url) as env_file:
        done = cli(settings, "link", "jill", bare=True, env_file=str(env_file))
    assert done.returncode == 0, done.stderr
    assert accounts.redeem_link(done.stdout.strip().rsplit("token=", 1)[1]).name == "jill"


def test_a_new_password_or_signing_out_everywhere_ends_every_session_but_not_the_keys(accounts, settings):
    account, issued = accounts.create("kim", password="first password")
    epoch = account["session_epoch"]
    assert accounts.by_session("kim", account["account_id"], epoch) is not None
    accounts.set_password("kim", "second password")
    assert accounts.by_session("kim", account["account_id"], epoch) is None
    assert accounts.by_password("kim", "first password") is None and accounts.by_password("kim", "second password")
    epoch = accounts.get("kim")["session_epoch"]
    ended = cli(settings, "signout", "kim")
    assert ended.returncode == 0, ended.stderr
    assert accounts.by_session("kim", account["account_id"], epoch) is None
    assert accounts.by_key(issued.key) is not None


@pytest.fixture(params=["table", "memory"])
def store(request, settings):
    """The accounts table on the local endpoint, and the in-memory one that fault tests use: they must agree."""
    if request.param == "table":
        return AccountsTable(settings)
    return memory_resources(settings)[0].accounts


def test_both_stores_keep_the_same_conditions(store):
    from sightfleet.errors import ConditionFailed
    account = {"account_id": "a1", "name": "lee", "admin": False, "password_hash": "", "session_epoch": "e",
               "created_at": "2026-12-01T00:00:00.000Z"}
    store.put_account(account)
    with pytest.raises(ConditionFailed):
        store.put_account({**account, "account_id": "a2"})
    with pytest.raises(ConditionFailed):
        store.update_account({**account, "name": "nobody"})
    assert store.get_account("lee")["account_id"] == "a1" and store.get_account("nobody") is None
    store.put_key("h1", {"key_id": "k1", "account_id": "a1", "name": "lee", "label": "", "created_at": "1"})
    store.put_key("h2", {"key_id": "k2", "account_id": "a1", "name": "lee", "label": "", "created_at": "2"})
    with pytest.raises(ConditionFailed):
        store.put_key("h1", {"key_id": "k3", "account_id": "a1", "name": "lee", "label": "", "created_at": "3"})
    assert [k["key_hash"] for k in store.keys_of("a1")] == ["h1", "h2"] and store.key_hash_of("k2") == "h2"
    assert store.delete_key("h1") and not store.delete_key("h1") and store.get_key("h1") is None
    store.put_link("t1", {"account_id": "a1", "name": "lee", "expires_at": 123})
    assert store.take_link("t1")["expires_at"] == 123 and store.take_link("t1") is None
    assert [a["name"] for a in store.accounts()] == ["lee"]
    store.delete_account("lee")
    assert store.get_account("lee") is None and store.accounts() == []


def _images_of(resources, owner: str, count: int) -> list[dict]:
    """count queued images of owner, each with an object at every key it names, as a processed image has."""
    from sightfleet.contracts import input_key, output_keys
    from tests.support import jpeg_bytes
    from web_tier.submit import Submitter, Upload

    submitter = Submitter(resources, resources.settings.max_upload_bytes)
    ids = [submitter.submit(Upload(jpeg_bytes("coffee"), f"p{n}.jpg", "trip", owner))["id"] for n in range(count)]
    for image_id in ids:
        resources.inputs.put(input_key(owner, image_id, "image/jpeg"), b"original", "image/jpeg")
        for key in output_keys(owner, image_id).values():
            resources.outputs.put(key, b"made", "application/octet-stream")
    return [resources.results.get(image_id) for image_id in ids]


def _stored_keys(resources, doc: dict) -> list[str]:
    from sightfleet.contracts import artefact_keys
    from sightfleet.errors import NoSuchObject

    inputs, outputs = artefact_keys(doc)
    found = []
    for bucket, keys in ((resources.inputs, inputs), (resources.outputs, outputs)):
        for key in dict.fromkeys(k for k in keys if k):
            try:
                bucket.get(key)
                found.append(key)
            except NoSuchObject:
                pass
    return found


def test_deleting_an_account_deletes_its_images_and_quota_and_no_one_elses(settings, accounts):
    from sightfleet.aws.limits import LimitsTable
    from sightfleet.resources import Resources

    resources, limits = Resources.connect(settings), LimitsTable(settings)
    leaving, _ = accounts.create("leaving")
    staying, _ = accounts.create("staying")
    gone, kept = _images_of(resources, leaving["account_id"], 3), _images_of(resources, staying["account_id"], 1)
    limits.reserve(leaving["account_id"], 3, 10)
    assert all(_stored_keys(resources, doc) for doc in gone + kept)

    deleted = cli(settings, "delete", "leaving")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted the 3 images of leaving" in deleted.stderr
    assert resources.results.page(owner=leaving["account_id"])[0] == []
    assert all(resources.results.get(doc["id"])["status"] == "DELETED" for doc in gone)   # tombstones
    assert [_stored_keys(resources, doc) for doc in gone] == [[], [], []]
    assert limits.held(leaving["account_id"]) == 0
    assert "leaving" not in cli(settings, "list").stdout
    assert [d["id"] for d in resources.results.page(owner=staying["account_id"])[0]] == [kept[0]["id"]]
    assert _stored_keys(resources, kept[0])


def test_an_account_deleted_with_keep_images_leaves_them_to_admins(settings, accounts):
    from sightfleet.resources import Resources

    resources = Resources.connect(settings)
    account, _ = accounts.create("archived")
    (doc,) = _images_of(resources, account["account_id"], 1)
    deleted = cli(settings, "delete", "archived", "--keep-images")
    assert deleted.returncode == 0, deleted.stderr
    assert resources.results.get(doc["id"])["status"] == "QUEUED" and _stored_keys(resources, doc)
    with pytest.raises(AccountError):
        accounts.get("archived")


def test_an_image_that_cannot_be_deleted_keeps_the_account_and_a_second_run_finishes(settings):
    from web_tier.accounts.__main__ import _delete

    resources, faults = memory_resources(settings)
    accounts = Accounts(resources.accounts)
    account, key = accounts.create("stuck")
    docs = _images_of(resources, account["account_id"], 3)
    stuck = docs[1]
    faults.fail("inputs.delete", when=lambda key: stuck["id"] in key)   # its original cannot be deleted

    with pytest.raises(AccountError, match=f"1 images of stuck could not be deleted \\({stuck['id']}; first error"):
        _delete(accounts, settings, "stuck", keep_images=False, resources=resources)
    assert accounts.get("stuck")["pending_purge"] == [stuck["id"]]   # kept, and it remembers the image
    assert accounts.by_key(key.key) is None   # locked out from the start: nothing is uploaded behind the delete
    assert [_stored_keys(resources, d) != [] for d in docs] == [False, True, False]
    assert resources.results.page(owner=account["account_id"])[0] == []   # a tombstone: no listing shows it

    faults.clear()   # storage answers again: the second run finishes the remembered image, then the account
    _delete(accounts, settings, "stuck", keep_images=False, resources=resources)
    assert _stored_keys(resources, stuck) == []
    with pytest.raises(AccountError):
        accounts.get("stuck")


def test_a_deletion_that_stops_part_way_counts_the_deleted_images_off_the_quota(settings):
    """A kept account is not left counting the images that did go."""
    from sightfleet.aws.limits import LimitsTable
    from web_tier.accounts.__main__ import _delete

    resources, faults = memory_resources(settings)
    accounts, limits = Accounts(resources.accounts), LimitsTable(settings)
    account, _ = accounts.create("counted")
    docs = _images_of(resources, account["account_id"], 3)
    limits.reserve(account["account_id"], 3, 10)
    faults.fail("outputs.delete", when=lambda key: docs[0]["id"] in key)
    with pytest.raises(AccountError):
        _delete(accounts, settings, "counted", keep_images=False, resources=resources)
    assert limits.held(account["account_id"]) == 0   # all three became tombstones (one kept files): none counts


def test_the_cli_password_change_lists_or_revokes_the_keys_made_since_the_last_change(settings, accounts):
    account, _ = accounts.create("jude", password="a long password")
    extra = accounts.issue_key(account, "made later")
    listed = cli(settings, "password", "jude", stdin="another long password\n")
    assert listed.returncode == 0, listed.stderr
    assert f"kept key {extra.key_id}" in listed.stderr and "--revoke-new-keys" in listed.stderr
    assert accounts.by_key(extra.key) is not None   # listed, not revoked
    newer = accounts.issue_key(accounts.get("jude"), "made after the change")
    revoked = cli(settings, "password", "jude", "--revoke-new-keys", stdin="a third long password\n")
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked key {newer.key_id}" in revoked.stderr and extra.key_id not in revoked.stderr
    assert accounts.by_key(newer.key) is None and accounts.by_key(extra.key) is not None
    assert accounts.by_password("jude", "a third long password").name == "jude"
