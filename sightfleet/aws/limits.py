"""DynamoDB: the limits table, shared by every web process and instance: rate-limit windows and image quotas.

There is no Redis or Memcached in this design, so counters live in DynamoDB, each changed by one
atomic UpdateItem. A rate window is an item `rate#<key>` with its hits and the millisecond its window
ends; its TTL attribute lets DynamoDB drop it later, but expiry never depends on that (TTL deletes
lazily): a hit on an ended window starts a new one under a condition, so exactly one caller does.
A quota is an item `quota#<owner>` with the images the owner holds.

On the local endpoint (moto) a conditional write is not atomic against a concurrent one, so two
callers that both find a window ended may both start it (its count restarts: more lenient, never a
false 429); on DynamoDB exactly one does.
"""
from __future__ import annotations

import time

from boto3.dynamodb.conditions import Attr

from sightfleet.aws.dynamodb import TTL_ATTRIBUTE, ensure_table, table_names
from sightfleet.aws.session import client, resource, translated
from sightfleet.config import Settings
from sightfleet.errors import ConditionFailed, Unavailable

RATE_PREFIX = "rate#"
QUOTA_PREFIX = "quota#"
# A hit that finds its window ended races at most the other callers that found it so too.
_WINDOW_TRIES = 3


def _now_ms() -> int:
    return int(time.time() * 1000)


class LimitsTable:
    """Counters in the `<prefix>-limits` table; every method raises the project's errors, never botocore's."""

    def __init__(self, settings: Settings, fail_fast: bool = False):
        """fail_fast: one short attempt per call (counters whose callers carry on without an answer)."""
        self.name = settings.names.limits_table
        self._table = resource(settings, "dynamodb", fail_fast).Table(self.name)

    def hit(self, key: str, window_s: int, amount: int = 1) -> int:
        """Add amount to key's current window (starting one if it ended) and return the window's hits."""
        for _ in range(_WINDOW_TRIES):
            try:
                return self._add_to_window(key, amount)
            except ConditionFailed:
                pass  # no window, or an ended one: start it, unless another caller just did
            try:
                self._start_window(key, window_s, amount)
                return amount
            except ConditionFailed:
                continue
        raise Unavailable(f"rate window {key}: still contended after {_WINDOW_TRIES} tries")

    def give_back(self, key: str, amount: int) -> None:
        """Take amount off key's current window (hits counted and then not used); nothing when it ended."""
        try:
            self._add_to_window(key, -amount)
        except ConditionFailed:
            pass   # the window ended meanwhile: its count went with it

    def _add_to_window(self, key: str, amount: int) -> int:
        with translated(f"hit {key}"):
            reply = self._table.update_item(
                Key={"pk": RATE_PREFIX + key}, UpdateExpression="ADD hits :amount",
                ConditionExpression=Attr("ends_ms").gt(_now_ms()),
                ExpressionAttributeValues={":amount": amount}, ReturnValues="UPDATED_NEW")
        return int(reply["Attributes"]["hits"])

    def _start_window(self, key: str, window_s: int, amount: int) -> None:
        now = _now_ms()
        ends = now + window_s * 1000
        with translated(f"start window {key}"):
            self._table.update_item(
                Key={"pk": RATE_PREFIX + key}, UpdateExpression="SET hits = :amount, ends_ms = :ends, #ttl = :ttl",
                ConditionExpression=Attr("ends_ms").not_exists() | Attr("ends_ms").lte(now),
                ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":amount": amount, ":ends": ends, ":ttl": ends // 1000 + 1})

    def window(self, key: str) -> tuple[int, float]:
        """The hits of key's current window and when it ends (epoch seconds); (0, now) when none runs."""
        with translated(f"read window {key}"):
            item = self._table.get_item(Key={"pk": RATE_PREFIX + key}, ConsistentRead=True).get("Item")
        now = _now_ms()
        if not item or int(item["ends_ms"]) <= now:
            return 0, now / 1000
        return int(item["hits"]), int(item["ends_ms"]) / 1000

    def clear(self, key: str) -> None:
        with translated(f"clear {key}"):
            self._table.delete_item(Key={"pk": RATE_PREFIX + key})

    def clear_all(self) -> int:
        """Delete every rate window (quotas stay: they count images that exist); how many were deleted."""
        deleted, params = 0, {"ProjectionExpression": "pk", "FilterExpression": Attr("pk").begins_with(RATE_PREFIX)}
        while True:
            with translated("list rate windows"):
                reply = self._table.scan(**params)
            with translated("clear rate windows"), self._table.batch_writer() as batch:
                for item in reply.get("Items", []):
                    batch.delete_item(Key={"pk": item["pk"]})
                    deleted += 1
            if "LastEvaluatedKey" not in reply:
                return deleted
            params["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def reserve(self, owner: str, count: int, limit: int) -> bool:
        """Count count more images for owner if that keeps it within limit; False (nothing counted) if not."""
        try:
            with translated(f"reserve {count} images for {owner}"):
                self._table.update_item(
                    Key={"pk": QUOTA_PREFIX + owner}, UpdateExpression="ADD images :count",
                    ConditionExpression=Attr("images").not_exists() | Attr("images").lte(limit - count),
                    ExpressionAttributeValues={":count": count})
        except ConditionFailed:
            return False
        return True

    def release(self, owner: str, count: int) -> None:
        """Count count images fewer for owner, never below zero (images from before the quota were not counted)."""
        try:
            with translated(f"release {count} images of {owner}"):
                self._table.update_item(
                    Key={"pk": QUOTA_PREFIX + owner}, UpdateExpression="ADD images :minus",
                    ConditionExpression=Attr("images").gte(count), ExpressionAttributeValues={":minus": -count})
        except ConditionFailed:
            with translated(f"release the last images of {owner}"):
                self._table.update_item(Key={"pk": QUOTA_PREFIX + owner}, UpdateExpression="SET images = :zero",
                                        ExpressionAttributeValues={":zero": 0})

    def forget(self, owner: str) -> None:
        """Remove owner's quota count (its account is gone)."""
        with translated(f"forget the quota of {owner}"):
            self._table.delete_item(Key={"pk": QUOTA_PREFIX + owner})

    def held(self, owner: str) -> int:
        """How many images owner holds, as counted."""
        with translated(f"read the quota of {owner}"):
            item = self._table.get_item(Key={"pk": QUOTA_PREFIX + owner}, ConsistentRead=True).get("Item")
        return int(item["images"]) if item else 0

    def check(self) -> None:
        with translated(f"table {self.name}"):
            self._table.meta.client.describe_table(TableName=self.name)


def limits_table_spec(name: str) -> dict:
    """CreateTable's arguments for the limits table (provisioning and the CloudFormation stack alike)."""
    return {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    }


def ensure_limits_table(settings: Settings) -> None:
    """Create the limits table with its TTL (idempotent)."""
    ddb = client(settings, "dynamodb")
    ensure_table(ddb, limits_table_spec(settings.names.limits_table), table_names(ddb))
