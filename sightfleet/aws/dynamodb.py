"""DynamoDB: the results table (one item per image) and the fleet table (heartbeats, decisions)."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from decimal import Decimal
from itertools import islice

from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary

from sightfleet.aws.session import client, resource, translated
from sightfleet.config import Settings
from sightfleet.contracts import ANONYMOUS_OWNER, PROCESSING, QUEUED, ResultDoc, epoch, iso, owner_of
from sightfleet.errors import ConditionFailed, Invalid, NoSuchResult, Unavailable  # noqa: F401 - NoSuchResult re-exported
from sightfleet.interfaces import (DECISION_KIND, HEARTBEAT_KIND, RESULT_KIND,  # noqa: F401 - re-exported
                                   album_at, listing_key)

log = logging.getLogger(__name__)
ALBUM_INDEX = "album-submitted"
SUBMITTED_INDEX = "kind-submitted"
COMPLETED_INDEX = "kind-completed"
# One owner's images newest first, and one owner's albums (album_at = "<album>/<submitted_at>":
# an album's images newest first by begins_with, and the album names by skipping from one album to the next).
OWNER_INDEX = "owner-submitted"
OWNER_ALBUM_INDEX = "owner-album"
# Album names cannot hold "/" and timestamps start with a digit: every album_at of album A sorts below A + this.
_PAST_ALBUM = "/~"
MAX_ALBUMS = 1000
TTL_ATTRIBUTE = "expires_at"   # the fleet table's items, and tombstones of deleted images, expire at this epoch second
_BATCH_ROUNDS = 5
_BATCH_BACKOFF_S = 0.05   # before the second round; doubled for each one after
# Re-read this much before the newest decision seen, for ones an eventually consistent read missed.
DECISION_OVERLAP_S = 10
# DynamoDB refuses items over 400 KB (names and values); writes stop short of it, with a margin.
ITEM_LIMIT_BYTES = 400 * 1024
MAX_ITEM_BYTES = 350 * 1024


def _to_item(result: Mapping[str, Any]) -> dict:
    """Index attributes beside the whole document as JSON (no float-to-Decimal games)."""
    item = {
        "id": result["id"], "kind": RESULT_KIND, "album": result["album"], "status": result["status"],
        "submitted_at": result["submitted_at"], "updated_at": result["updated_at"],
        "owner": owner_of(result), "album_at": album_at(result),
        "doc": json.dumps(result, separators=(",", ":")),
    }
    if result.get("completed_at"):
        item["completed_at"] = result["completed_at"]
    return item


def item_size(item: dict) -> int:
    """An item's size as DynamoDB counts it: UTF-8 attribute names plus their values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value) -> int:
    """One attribute value's size by DynamoDB's rules (numbers: about a byte per two digits, plus one)."""
    if isinstance(value, str):
        return len(value.encode())
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, (int, Decimal)):
        return (len(Decimal(value).normalize().as_tuple().digits) + 1) // 2 + 1
    if isinstance(value, (bytes, bytearray, Binary)):
        return len(bytes(value))
    if isinstance(value, dict):   # 3 bytes for the map, 1 per element
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return 3 + sum(_value_size(v) + 1 for v in value)
    if isinstance(value, (set, frozenset)):
        return sum(_value_size(v) for v in value)
    raise TypeError(f"not a DynamoDB value: {type(value).__name__}")


def _bounded(item: dict, what: str) -> dict:
    """The item, if it is within MAX_ITEM_BYTES; Invalid, before any call, if not."""
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise Invalid(f"{what}: the item is {size} bytes, over the limit of {MAX_ITEM_BYTES} bytes "
                      f"(DynamoDB refuses items over {ITEM_LIMIT_BYTES})")
    return item


def _from_item(item: dict) -> ResultDoc:
    return json.loads(item["doc"])


def _list_params(album: str | None, status: str | None, cursor: dict | None, owner: str | None) -> dict:
    """Query parameters for newest-first listing: one owner's (album's) index, or every owner's."""
    if owner and album:
        params = {"IndexName": OWNER_ALBUM_INDEX, "KeyConditionExpression":
                  Key("owner").eq(owner) & Key("album_at").begins_with(album + "/")}
    elif owner:
        params = {"IndexName": OWNER_INDEX, "KeyConditionExpression": Key("owner").eq(owner)}
    elif album:
        params = {"IndexName": ALBUM_INDEX, "KeyConditionExpression": Key("album").eq(album)}
    else:
        params = {"IndexName": SUBMITTED_INDEX, "KeyConditionExpression": Key("kind").eq(RESULT_KIND)}
    if status:
        params["FilterExpression"] = Attr("status").eq(status)
    if cursor:
        params["ExclusiveStartKey"] = cursor
    return params


def _items(call, what: str, params: dict):
    """Every item of a paginated query or scan, one page after another."""
    params = dict(params)
    while True:
        with translated(what):
            reply = call(**params)
        yield from reply.get("Items", [])
        if "LastEvaluatedKey" not in reply:
            return
        params["ExclusiveStartKey"] = reply["LastEvaluatedKey"]


def _batch_get(table, keys: list[dict], what: str, consistent: bool = False) -> list[dict]:
    """The items with these keys (missing ones left out, in no set order), 100 keys a call.

    Unavailable if DynamoDB still holds some back after _BATCH_ROUNDS: a partial answer
    would pass for items that do not exist (a live worker's heartbeat, a finished result).
    """
    found: list[dict] = []
    for start in range(0, len(keys), 100):
        request: dict = {table.name: {"Keys": keys[start:start + 100], "ConsistentRead": consistent}}
        # DynamoDB may hand back part of a batch as UnprocessedKeys under load: ask again for those.
        for round_number in range(_BATCH_ROUNDS):
            if round_number:
                time.sleep(_BATCH_BACKOFF_S * 2 ** (round_number - 1))
            with translated(what):
                reply = table.meta.client.batch_get_item(RequestItems=request)
            found += reply["Responses"].get(table.name, [])
            request = reply.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise Unavailable(f"{what}: {len(request[table.name]['Keys'])} keys still unprocessed "
                              f"after {_BATCH_ROUNDS} rounds")
    return found


class ResultsTable:
    """One item per image id; status moves QUEUED -> PROCESSING -> SUCCEEDED | FAILED."""

    def __init__(self, settings: Settings):
        self.name = settings.names.results_table
        self._table = resource(settings, "dynamodb").Table(self.name)

    def create(self, result: ResultDoc) -> None:
        """Write a new QUEUED result; ConditionFailed if the id exists, Invalid if it is too large."""
        what = f"create result {result['id']}"
        item = _bounded(_to_item(result), what)
        with translated(what):
            self._table.put_item(Item=item, ConditionExpression=Attr("id").not_exists())

    def get(self, image_id: str) -> ResultDoc:
        """The current result, read consistently; NotFound if unknown."""
        with translated(f"get result {image_id}"):
            item = self._table.get_item(Key={"id": image_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise NoSuchResult(f"no image {image_id}")
        return _from_item(item)

    def get_many(self, image_ids: list[str]) -> list[ResultDoc]:
        """Several results by id (missing ones left out), in the order asked."""
        keys = [{"id": i} for i in dict.fromkeys(image_ids)]
        found = {item["id"]: _from_item(item) for item in _batch_get(self._table, keys, "batch get results", True)}
        return [found[i] for i in image_ids if i in found]

    def start(self, result: ResultDoc) -> None:
        """Mark PROCESSING unless already final; ConditionFailed when final."""
        self._put_unless_final(result, f"start {result['id']}")

    def finish(self, result: ResultDoc) -> None:
        """Write the final result once; ConditionFailed when someone already did, Invalid if too large."""
        self._put_unless_final(result, f"finish {result['id']}")

    def requeue(self, result: ResultDoc) -> None:
        """Put a claimed job back to QUEUED unless final; ConditionFailed when final."""
        self._put_unless_final(result, f"requeue {result['id']}")

    def _put_unless_final(self, result: ResultDoc, what: str) -> None:
        """The write of start, finish and requeue: a new row, or one of the same owner not final yet (ConditionFailed
        otherwise: a job never takes over another owner's image); Invalid if the item would be too large."""
        item = _bounded(_to_item(result), what)
        owner = owner_of(result)
        same_owner = Attr("owner").eq(owner)
        if owner == ANONYMOUS_OWNER:   # rows from before owners existed have no owner attribute
            same_owner = same_owner | Attr("owner").not_exists()
        condition = Attr("id").not_exists() | (Attr("status").is_in([QUEUED, PROCESSING]) & same_owner)
        with translated(what):
            self._table.put_item(Item=item, ConditionExpression=condition)

    def replace(self, result: ResultDoc, status: str, updated_at: str) -> None:
        """Overwrite the row only while it has this status and updated_at; ConditionFailed otherwise."""
        what = f"replace result {result['id']}"
        item = _bounded(_to_item(result), what)
        with translated(what):
            self._table.put_item(Item=item, ConditionExpression=Attr("status").eq(status)
                                 & Attr("updated_at").eq(updated_at))

    def delete(self, image_id: str) -> None:
        with translated(f"delete result {image_id}"):
            self._table.delete_item(Key={"id": image_id})

    def replace_with_tombstone(self, tombstone: ResultDoc) -> bool:
        """Replace the row with a deleted image's tombstone: no index attribute (it leaves every listing),
        a status no worker write overwrites, and a TTL. False when it was a tombstone already (by a racing delete)."""
        item = {"id": tombstone["id"], "status": tombstone["status"], TTL_ATTRIBUTE: tombstone["expires_at"],
                "doc": json.dumps(tombstone, separators=(",", ":"))}
        try:
            with translated(f"replace_with_tombstone result {tombstone['id']}"):
                self._table.put_item(Item=item, ConditionExpression=Attr("status").not_exists()
                                     | Attr("status").ne(tombstone["status"]))
        except ConditionFailed:
            return False
        return True

    def page(self, album: str | None = None, status: str | None = None, limit: int = 20,
             cursor: dict | None = None, owner: str | None = None, max_reads: int = 10
             ) -> tuple[list[ResultDoc], dict | None]:
        """Newest first, optionally one album and one status; the cursor is None after the last page.

        DynamoDB applies Limit before a filter, so a status filter can leave a page short or
        empty; this reads on (at most max_reads queries) until it holds one result more than the
        page, and then builds the cursor from the last result shown.
        """
        params = _list_params(album, status, cursor, owner)
        found: list[ResultDoc] = []
        for _ in range(max_reads):
            with translated("list results"):
                reply = self._table.query(ScanIndexForward=False, Limit=limit + 1, **params)
            found.extend(_from_item(i) for i in reply.get("Items", []))
            params["ExclusiveStartKey"] = reply.get("LastEvaluatedKey")
            if len(found) > limit or not params["ExclusiveStartKey"]:
                break
        if len(found) > limit:
            return found[:limit], listing_key(found[limit - 1], owner, album)
        return found, params["ExclusiveStartKey"]

    def completed_since(self, since_iso: str) -> list[ResultDoc]:
        """Every result completed at or after since_iso (for throughput and latency figures)."""
        params = {"IndexName": COMPLETED_INDEX,
                  "KeyConditionExpression": Key("kind").eq(RESULT_KIND) & Key("completed_at").gte(since_iso)}
        return [_from_item(i) for i in _items(self._table.query, "results completed since", params)]

    def albums(self, owner: str) -> list[str]:
        """One owner's album names, for the album chooser: one Query per album, each reading one item.

        Each query asks for the first index entry past the album before, so the cost grows with the
        number of albums, not of photos (a DynamoDB index has no DISTINCT).
        """
        names: list[str] = []
        condition = Key("owner").eq(owner)
        while len(names) < MAX_ALBUMS:
            if names:
                condition = Key("owner").eq(owner) & Key("album_at").gt(names[-1] + _PAST_ALBUM)
            with translated(f"list albums of {owner}"):
                items = self._table.query(IndexName=OWNER_ALBUM_INDEX, KeyConditionExpression=condition,
                                          Limit=1, ProjectionExpression="album").get("Items", [])
            if not items:
                break
            names.append(items[0]["album"])
        return names

    def check(self) -> None:
        with translated(f"table {self.name}"):
            self._table.meta.client.describe_table(TableName=self.name)


class FleetTable:
    """Worker heartbeats (pk HEARTBEAT_KIND) and controller decisions (pk DECISION_KIND), with a TTL."""

    def __init__(self, settings: Settings):
        self.name = settings.names.fleet_table
        self._table = resource(settings, "dynamodb").Table(self.name)

    def put(self, kind: str, key: str, doc: dict, ttl_s: int = 86400) -> None:
        """Write one document with a TTL; Invalid if it is too large."""
        what = f"put {kind} {key}"
        item = _bounded({"pk": kind, "sk": key, "doc": json.dumps(doc, separators=(",", ":")),
                         TTL_ATTRIBUTE: int(time.time()) + ttl_s}, what)
        with translated(what):
            self._table.put_item(Item=item)

    def all(self, kind: str, since_key: str | None = None, newest_first: bool = False,
            limit: int | None = None) -> list[dict]:
        """Documents of one kind, by key order; since_key keeps keys >= it."""
        condition = Key("pk").eq(kind)
        if since_key:
            condition = condition & Key("sk").gte(since_key)
        params = {"KeyConditionExpression": condition, "ScanIndexForward": not newest_first}
        if limit:
            params["Limit"] = limit   # no filter, so the first page holds them all
        items = islice(_items(self._table.query, f"query {kind}", params), limit)
        return [json.loads(i["doc"]) for i in items]

    def get_many(self, kind: str, keys: list[str]) -> dict[str, dict]:
        """Documents of one kind by key, for the keys that have one."""
        items = _batch_get(self._table, [{"pk": kind, "sk": k} for k in dict.fromkeys(keys)], f"batch get {kind}")
        return {item["sk"]: json.loads(item["doc"]) for item in items}

    def delete(self, kind: str, key: str) -> None:
        with translated(f"delete {kind} {key}"):
            self._table.delete_item(Key={"pk": kind, "sk": key})


class DecisionTail:
    """The controller's decisions of the last lookback_s, read incrementally: a poll fetches only new ones."""

    def __init__(self, fleet_log, lookback_s: float, overlap_s: float = DECISION_OVERLAP_S):
        self._fleet_log = fleet_log
        self._lookback_s = lookback_s
        self._overlap_s = overlap_s
        self._by_key: dict[str, dict] = {}
        self._lock = threading.Lock()

    def read(self, now: float) -> list[dict]:
        """Documents of the last lookback_s seconds, oldest first."""
        with self._lock:
            since = now - self._lookback_s
            if self._by_key:
                since = max(since, (epoch(max(self._by_key)) or since) - self._overlap_s)
            for doc in self._fleet_log.all(DECISION_KIND, since_key=iso(since)):
                key = doc.get("at") or iso(doc.get("time", 0))
                if epoch(key) is not None:  # an unreadable key would break the next read's start
                    self._by_key[key] = doc
            oldest = iso(now - self._lookback_s)
            self._by_key = {k: v for k, v in self._by_key.items() if k >= oldest}
            return [self._by_key[k] for k in sorted(self._by_key)]


def table_names(ddb) -> set[str]:
    """Every table of the account and region: ListTables answers 100 names a page, so all pages."""
    with translated("list tables"):
        return {name for page in ddb.get_paginator("list_tables").paginate() for name in page["TableNames"]}


def ensure_tables(settings: Settings, *specs: dict) -> None:
    """Create the results and fleet tables, and any other tables' specs given, with their indexes and TTL (idempotent)."""
    ddb = client(settings, "dynamodb")
    names = settings.names
    existing = table_names(ddb)
    for spec in (results_table_spec(names.results_table), fleet_table_spec(names.fleet_table), *specs):
        ensure_table(ddb, spec, existing)


def ensure_table(ddb, spec: dict, existing: set[str]) -> None:
    """One table as its spec says: made unless it exists, then given what an older version lacks (indexes, TTL).

    Every table of the stack expires rows by TTL_ATTRIBUTE (fleet rows, tombstones, links, rate windows).
    """
    name = spec["TableName"]
    if name not in existing:
        with translated(f"create table {name}"):
            ddb.create_table(**spec)
    with translated(f"wait for {name}"):
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    _add_missing_indexes(ddb, spec)
    _enable_ttl(ddb, name)


def _enable_ttl(ddb, table: str) -> None:
    with translated(f"enable ttl on {table}"):
        ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": TTL_ATTRIBUTE})


def _add_missing_indexes(ddb, spec: dict) -> None:
    """Create the indexes a table made by an older version lacks (a persisted local stack, an older stack).

    Rows written before an index existed and lacking its attributes stay out of it: rows from
    before owners are listed only in every owner's listing (admins).
    """
    name = spec["TableName"]
    with translated(f"describe {name}"):
        existing = {i["IndexName"] for i in ddb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])}
    for index in spec.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in existing:
            continue
        log.info("adding index %s to table %s", index["IndexName"], name)
        with translated(f"add index {index['IndexName']} to {name}"):
            ddb.update_table(TableName=name, AttributeDefinitions=spec["AttributeDefinitions"],
                             GlobalSecondaryIndexUpdates=[{"Create": index}])
        _wait_for_indexes(ddb, name)


def _wait_for_indexes(ddb, name: str, timeout_s: float = 1800, interval_s: float = 1.0) -> None:
    """Until the table and its indexes are ACTIVE: DynamoDB builds one new index at a time."""
    deadline = time.monotonic() + timeout_s
    while True:
        with translated(f"describe {name}"):
            table = ddb.describe_table(TableName=name)["Table"]
        statuses = [table["TableStatus"]] + [i.get("IndexStatus", "ACTIVE") for i in table.get("GlobalSecondaryIndexes", [])]
        if all(s == "ACTIVE" for s in statuses):
            return
        if time.monotonic() > deadline:
            raise Unavailable(f"table {name}: indexes still building after {timeout_s:.0f} s ({statuses})")
        time.sleep(interval_s)


def fleet_table_spec(name: str) -> dict:
    """CreateTable's arguments for the fleet table (scripts/provision and the CloudFormation stack)."""
    return {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
    }


def results_table_spec(name: str) -> dict:
    """CreateTable's arguments for the results table and its indexes (provisioning and the stack alike)."""
    def index(index_name: str, hash_key: str, range_key: str) -> dict:
        return {
            "IndexName": index_name,
            "KeySchema": [{"AttributeName": hash_key, "KeyType": "HASH"},
                          {"AttributeName": range_key, "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    attributes = ("id", "album", "kind", "submitted_at", "completed_at", "owner", "album_at")
    return {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        "GlobalSecondaryIndexes": [
            index(ALBUM_INDEX, "album", "submitted_at"),
            index(SUBMITTED_INDEX, "kind", "submitted_at"),
            index(COMPLETED_INDEX, "kind", "completed_at"),
            index(OWNER_INDEX, "owner", "submitted_at"),
            index(OWNER_ALBUM_INDEX, "owner", "album_at"),
        ],
    }
