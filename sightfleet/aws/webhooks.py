"""DynamoDB: webhook endpoints, their delivery logs, callback secrets and per-image callbacks, in the accounts table.

Items beside the accounts (same table, keyed by `pk`; see sightfleet/aws/accounts.py):
- `hook#<id>`: an endpoint (owner's account id, URL, events, secret sealed, status, consecutive failures,
  and `log`: its last LOG_SIZE deliveries by delivery id);
- `cbsecret#<account id>`: the account's secret for per-request callbacks, sealed;
- `callback#<image id>`: the callback URL one upload named, until its TTL.
"""
from __future__ import annotations

import time

from boto3.dynamodb.conditions import Attr, Key

from sightfleet.aws.accounts import ACCOUNT_ITEMS_INDEX, TTL_ATTRIBUTE, _pk, _plain
from sightfleet.aws.session import resource, translated
from sightfleet.config import Settings

HOOK, CALLBACK_SECRET, CALLBACK = "hook", "cbsecret", "callback"
LOG_SIZE = 50
CALLBACK_TTL_S = 3 * 86400


class WebhookTable:
    """Webhook endpoints and callbacks of the stack's accounts."""

    def __init__(self, settings: Settings):
        self.name = settings.names.accounts_table
        self._table = resource(settings, "dynamodb").Table(self.name)

    def put_hook(self, hook: dict) -> None:
        with translated(f"create webhook {hook['hook_id']}"):
            self._table.put_item(Item={"pk": _pk(HOOK, hook["hook_id"]), "kind": HOOK, **hook},
                                 ConditionExpression=Attr("pk").not_exists())

    def get_hook(self, hook_id: str) -> dict | None:
        with translated(f"get webhook {hook_id}"):
            item = self._table.get_item(Key={"pk": _pk(HOOK, hook_id)}, ConsistentRead=True).get("Item")
        return _hook(item)

    def hooks_of(self, account_id: str) -> list[dict]:
        """One account's endpoints, oldest first (the listing index; a moment's lag is harmless)."""
        params = {"IndexName": ACCOUNT_ITEMS_INDEX, "KeyConditionExpression": Key("account_id").eq(account_id),
                  "FilterExpression": Attr("kind").eq(HOOK)}
        items = []
        with translated(f"list webhooks of {account_id}"):
            while True:
                reply = self._table.query(**params)
                items += reply.get("Items", [])
                if "LastEvaluatedKey" not in reply:
                    return [hook for hook in map(_hook, items) if hook is not None]
                params["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def delete_hook(self, hook_id: str) -> bool:
        with translated(f"delete webhook {hook_id}"):
            reply = self._table.delete_item(Key={"pk": _pk(HOOK, hook_id)}, ReturnValues="ALL_OLD")
        return "Attributes" in reply

    def set_status(self, hook_id: str, status: str, reason: str = "") -> None:
        """Disable an endpoint with the reason its owner sees, or enable it again (failures start over)."""
        with translated(f"set webhook {hook_id} {status}"):
            self._table.update_item(
                Key={"pk": _pk(HOOK, hook_id)}, ConditionExpression=Attr("pk").exists(),
                UpdateExpression="SET #s = :s, disabled_reason = :r, failures = :zero",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": status, ":r": reason, ":zero": 0})

    def record(self, hook_id: str, delivery_id: str, entry: dict, failed: bool) -> int:
        """Log one attempt's outcome on its endpoint; the endpoint's consecutive failures after it."""
        update = "SET #log.#d = :entry, failures = " + ("if_not_exists(failures, :zero) + :one" if failed else ":zero")
        with translated(f"log delivery {delivery_id}"):
            reply = self._table.update_item(
                Key={"pk": _pk(HOOK, hook_id)}, ConditionExpression=Attr("pk").exists(), UpdateExpression=update,
                ExpressionAttributeNames={"#log": "log", "#d": delivery_id},
                ExpressionAttributeValues={":entry": entry, ":zero": 0, **({":one": 1} if failed else {})},
                ReturnValues="ALL_NEW")
        attributes = reply["Attributes"]
        self._trim(hook_id, attributes.get("log", {}))
        return int(attributes.get("failures", 0))

    def _trim(self, hook_id: str, log: dict) -> None:
        """Keep the last LOG_SIZE deliveries (by when they were last tried)."""
        if len(log) <= LOG_SIZE:
            return
        oldest = sorted(log, key=lambda d: log[d].get("at", ""))[:len(log) - LOG_SIZE]
        names = {f"#o{i}": delivery for i, delivery in enumerate(oldest)}
        with translated(f"trim the log of webhook {hook_id}"):
            self._table.update_item(Key={"pk": _pk(HOOK, hook_id)},
                                    UpdateExpression="REMOVE " + ", ".join(f"#log.{n}" for n in names),
                                    ExpressionAttributeNames={"#log": "log", **names})

    def put_callback_secret(self, account_id: str, sealed: str) -> None:
        """Set (or replace) the account's callback secret."""
        with translated(f"set the callback secret of {account_id}"):
            self._table.put_item(Item={"pk": _pk(CALLBACK_SECRET, account_id), "kind": CALLBACK_SECRET,
                                       "account_id": account_id, "secret_sealed": sealed,
                                       "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def delete_callback_secret(self, account_id: str) -> None:
        with translated(f"delete the callback secret of {account_id}"):
            self._table.delete_item(Key={"pk": _pk(CALLBACK_SECRET, account_id)})

    def callback_secret(self, account_id: str) -> str | None:
        """The account's sealed callback secret; None when it has none."""
        with translated(f"get the callback secret of {account_id}"):
            item = self._table.get_item(Key={"pk": _pk(CALLBACK_SECRET, account_id)}, ConsistentRead=True)
        return item.get("Item", {}).get("secret_sealed")

    def put_callback(self, image_id: str, account_id: str, url: str) -> None:
        """Remember the callback URL an upload named, for the deliverer (it expires with CALLBACK_TTL_S)."""
        with translated(f"remember the callback of {image_id}"):
            self._table.put_item(Item={"pk": _pk(CALLBACK, image_id), "kind": CALLBACK, "owner": account_id,
                                       "url": url, TTL_ATTRIBUTE: int(time.time() + CALLBACK_TTL_S)})

    def callback(self, image_id: str) -> dict | None:
        with translated(f"get the callback of {image_id}"):
            return _plain(self._table.get_item(Key={"pk": _pk(CALLBACK, image_id)}, ConsistentRead=True).get("Item"))


def _hook(item: dict | None) -> dict | None:
    """An endpoint as stored, with numbers as Python has them."""
    if item is None:
        return None
    hook = {name: value for name, value in item.items() if name not in ("pk", "kind")}
    hook["failures"] = int(hook.get("failures", 0))
    hook["events"] = sorted(hook.get("events", []))
    hook["log"] = {d: {k: int(v) if k in ("attempts", "code") else v for k, v in e.items()}
                   for d, e in (hook.get("log") or {}).items()}
    return hook
