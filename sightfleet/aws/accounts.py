"""DynamoDB: the accounts table (accounts by user name, API keys and sign-in links by the hash of their secret).

One table of its own, keyed by `pk` alone:
- `account#<name>`: an account (id, name, admin, password hash);
- `key#<sha256 of the key>`: an API key (its public id, the account it acts for);
- `link#<sha256 of the token>`: a one-time sign-in link, with an expiry (and a TTL that tidies it away);
- `akey#<access key id>`: a SigV4 access key, its secret sealed (sightfleet/secretbox.py).

Every lookup that authenticates is a strongly consistent GetItem on the item key, so a revoked key or a
deleted account stops working with the next request; the `account-items` index (by account id) serves
only listings (an account's keys), where a moment's lag does no harm.
"""
from __future__ import annotations

from typing import overload

from boto3.dynamodb.conditions import Attr, Key

from sightfleet.aws.session import resource, translated
from sightfleet.config import Settings
from sightfleet.errors import ConditionFailed

ACCOUNT_ITEMS_INDEX = "account-items"
TTL_ATTRIBUTE = "expires_at"
ACCOUNT, KEY, LINK, ACCESS_KEY = "account", "key", "link", "akey"


def _pk(kind: str, value: str) -> str:
    return f"{kind}#{value}"


@overload
def _plain(item: dict) -> dict: ...
@overload
def _plain(item: None) -> None: ...
def _plain(item: dict | None) -> dict | None:
    """An item without its table key, booleans and numbers as Python has them."""
    if item is None:
        return None
    doc = {name: value for name, value in item.items() if name != "pk"}
    if TTL_ATTRIBUTE in doc:
        doc[TTL_ATTRIBUTE] = int(doc[TTL_ATTRIBUTE])
    return doc


class AccountsTable:
    """The stack's accounts, API keys and sign-in links (see the module docstring for the layout)."""

    def __init__(self, settings: Settings):
        self.name = settings.names.accounts_table
        self._table = resource(settings, "dynamodb").Table(self.name)

    def put_account(self, account: dict) -> None:
        """Write a new account; ConditionFailed when the name is taken."""
        self._put_new(_pk(ACCOUNT, account["name"]), ACCOUNT, account, f"create account {account['name']}")

    def update_account(self, account: dict) -> None:
        """Rewrite an existing account (a new password); ConditionFailed when it no longer exists."""
        item = {"pk": _pk(ACCOUNT, account["name"]), "kind": ACCOUNT, **account}
        with translated(f"update account {account['name']}"):
            self._table.put_item(Item=item, ConditionExpression=Attr("pk").exists())

    def get_account(self, name: str) -> dict | None:
        """The account of this user name, read consistently; None when there is none."""
        return self._get(_pk(ACCOUNT, name), f"get account {name}")

    def accounts(self) -> list[dict]:
        """Every account, by name (a scan: for the admin command line, not for requests)."""
        found = self._scan(Attr("kind").eq(ACCOUNT), "list accounts")
        return sorted(found, key=lambda account: account["name"])

    def delete_account(self, name: str) -> None:
        with translated(f"delete account {name}"):
            self._table.delete_item(Key={"pk": _pk(ACCOUNT, name)})

    def put_key(self, key_hash: str, key: dict) -> None:
        """Record a new API key under the hash of its secret."""
        self._put_new(_pk(KEY, key_hash), KEY, key, f"create key {key['key_id']}")

    def get_key(self, key_hash: str) -> dict | None:
        """The API key with this hash, read consistently; None when unknown or revoked."""
        return self._get(_pk(KEY, key_hash), "look up key")

    def keys_of(self, account_id: str) -> list[dict]:
        """One account's API keys, oldest first, each with its `key_hash` (from the listing index)."""
        params = {"IndexName": ACCOUNT_ITEMS_INDEX, "KeyConditionExpression": Key("account_id").eq(account_id),
                  "FilterExpression": Attr("kind").eq(KEY)}
        items = self._query(params, f"list keys of {account_id}")
        return [{**_plain(item), "key_hash": item["pk"].removeprefix(_pk(KEY, ""))} for item in items]

    def key_hash_of(self, key_id: str) -> str | None:
        """The hash under which the key with this public id is stored; None when there is none."""
        with translated(f"find key {key_id}"):
            items = self._scan_raw(Attr("kind").eq(KEY) & Attr("key_id").eq(key_id))
        return next((item["pk"].removeprefix(_pk(KEY, "")) for item in items), None)

    def delete_key(self, key_hash: str) -> bool:
        """Revoke a key; False when there was none with this hash."""
        with translated("delete key"):
            reply = self._table.delete_item(Key={"pk": _pk(KEY, key_hash)}, ReturnValues="ALL_OLD")
        return "Attributes" in reply

    def put_access_key(self, key_id: str, key: dict) -> None:
        """Record a new access key (its secret sealed) under its public id."""
        self._put_new(_pk(ACCESS_KEY, key_id), ACCESS_KEY, key, f"create access key {key_id}")

    def get_access_key(self, key_id: str) -> dict | None:
        """The access key with this id, read consistently; None when unknown or revoked."""
        return self._get(_pk(ACCESS_KEY, key_id), "look up access key")

    def access_keys_of(self, account_id: str) -> list[dict]:
        """One account's access keys, oldest first (from the listing index)."""
        params = {"IndexName": ACCOUNT_ITEMS_INDEX, "KeyConditionExpression": Key("account_id").eq(account_id),
                  "FilterExpression": Attr("kind").eq(ACCESS_KEY)}
        return [_plain(item) for item in self._query(params, f"list access keys of {account_id}")]

    def delete_access_key(self, key_id: str) -> bool:
        """Revoke an access key; False when there was none with this id."""
        with translated("delete access key"):
            reply = self._table.delete_item(Key={"pk": _pk(ACCESS_KEY, key_id)}, ReturnValues="ALL_OLD")
        return "Attributes" in reply

    def touch_key(self, key_hash: str, when: str) -> None:
        """Record the key's last use; nothing when it was revoked meanwhile (never brings it back)."""
        try:
            with translated("note key use"):
                self._table.update_item(Key={"pk": _pk(KEY, key_hash)}, UpdateExpression="SET last_used_at = :when",
                                        ConditionExpression=Attr("pk").exists(),
                                        ExpressionAttributeValues={":when": when})
        except ConditionFailed:
            pass

    def replace_password_hash(self, name: str, old: str, new: str) -> bool:
        """Swap the password hash if it is still `old`, leaving the session epoch and all else as they are."""
        try:
            with translated(f"rehash password of {name}"):
                self._table.update_item(Key={"pk": _pk(ACCOUNT, name)}, UpdateExpression="SET password_hash = :new",
                                        ConditionExpression=Attr("password_hash").eq(old),
                                        ExpressionAttributeValues={":new": new})
        except ConditionFailed:
            return False
        return True

    def put_link(self, token_hash: str, link: dict) -> None:
        """Record a new sign-in link (with its `expires_at`, which is also the item's TTL)."""
        self._put_new(_pk(LINK, token_hash), LINK, link, "create sign-in link")

    def take_link(self, token_hash: str) -> dict | None:
        """Remove the sign-in link with this hash and return it: of two callers, only one gets it."""
        with translated("use sign-in link"):
            reply = self._table.delete_item(Key={"pk": _pk(LINK, token_hash)}, ReturnValues="ALL_OLD")
        return _plain(reply.get("Attributes"))

    def check(self) -> None:
        with translated(f"table {self.name}"):
            self._table.meta.client.describe_table(TableName=self.name)

    def _put_new(self, pk: str, kind: str, doc: dict, what: str) -> None:
        with translated(what):
            self._table.put_item(Item={"pk": pk, "kind": kind, **doc}, ConditionExpression=Attr("pk").not_exists())

    def _get(self, pk: str, what: str) -> dict | None:
        with translated(what):
            return _plain(self._table.get_item(Key={"pk": pk}, ConsistentRead=True).get("Item"))

    def _scan(self, condition, what: str) -> list[dict]:
        with translated(what):
            return [_plain(item) for item in self._scan_raw(condition)]

    def _scan_raw(self, condition) -> list[dict]:
        """Every item that meets condition, page after page (call inside `translated`)."""
        params, items = {"FilterExpression": condition}, []
        while True:
            reply = self._table.scan(**params)
            items += reply.get("Items", [])
            if "LastEvaluatedKey" not in reply:
                return items
            params["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def _query(self, params: dict, what: str) -> list[dict]:
        params, items = dict(params), []
        while True:
            with translated(what):
                reply = self._table.query(**params)
            items += reply.get("Items", [])
            if "LastEvaluatedKey" not in reply:
                return items
            params["ExclusiveStartKey"] = reply["LastEvaluatedKey"]


def accounts_table_spec(name: str) -> dict:
    """CreateTable's arguments for the accounts table (provisioning and the CloudFormation stack alike)."""
    return {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "account_id", "created_at")],
        "GlobalSecondaryIndexes": [{
            "IndexName": ACCOUNT_ITEMS_INDEX,
            "KeySchema": [{"AttributeName": "account_id", "KeyType": "HASH"},
                          {"AttributeName": "created_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}],
    }

