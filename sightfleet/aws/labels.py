"""DynamoDB: the label index (which of an owner's images carry a label) and each owner's label counts.

One table, `<prefix>-labels`, two kinds of item:
- an entry per (image, label): pk `image#<id>`, sk the label key; so an image's entries are one
  consistent Query, to replace them on reprocessing and remove them on delete. Two indexes find an
  owner's images by label, newest first: `owner-label` (hash `owner_label` = `<owner>#<label key>`,
  range `at` = `<submitted_at>#<id>`) and `owner-label-album` (same hash, range `album_at` =
  `<album>/<submitted_at>#<id>`, read with begins_with). No Scan and no filter over the table: a
  search reads one owner's one label.
- a count per owner and label, and per owner, album and label: pk `count#<owner>`, sk `all#<key>` or
  `album#<album>#<key>` (owners and albums hold no "#"), attribute `n`. Every entry written or removed
  moves its two counts in the same transaction, under a condition on the entry, so a redelivered
  write or a repeated delete moves nothing.
- a search term's entries (sightfleet/findterms.py: words, faces, colours, held) are entries like a
  label's under keys no label has; each is counted once per owner, under sk `term#<key>`, apart from
  the label counts (which read `all#` and `album#` only).
"""
from __future__ import annotations

import logging
from decimal import Decimal

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from sightfleet.aws.dynamodb import _items
from sightfleet.aws.session import error_code, resource, translated
from sightfleet.config import Settings
from sightfleet.errors import ConditionFailed
from sightfleet.findterms import is_term_key
from sightfleet.labelindex import IMAGE_PREFIX, Entry, owner_label, search_key

log = logging.getLogger(__name__)
OWNER_LABEL_INDEX = "owner-label"
OWNER_LABEL_ALBUM_INDEX = "owner-label-album"
_IMAGE, _COUNT = IMAGE_PREFIX, "count#"
# A transaction holds at most 100 writes; each entry takes three (itself and its two counts).
_ENTRIES_PER_TRANSACTION = 33
_ALL, _ALBUM, _TERM = "all#", "album#", "term#"


def _entry_item(entry: Entry) -> dict:
    """The entry with both search indexes' sort keys (search_key gives the one a search goes on from)."""
    return {**search_key(entry, None), **search_key(entry, entry.album), "owner": entry.owner, "album": entry.album,
            "name": entry.name, "confidence": Decimal(str(entry.confidence)), "submitted_at": entry.submitted_at}


def _entry(item: dict) -> Entry:
    return Entry(image_id=item["pk"][len(_IMAGE):], owner=item["owner"], album=item["album"], key=item["sk"],
                 name=item["name"], confidence=float(item["confidence"]), submitted_at=item["submitted_at"])


class LabelsTable:
    """The label index and counts; every method raises the project's errors, never botocore's."""

    def __init__(self, settings: Settings):
        self.name = settings.names.labels_table
        self._table = resource(settings, "dynamodb").Table(self.name)
        self._client = self._table.meta.client   # the resource's client: it marshals Python values itself

    # --- one image's entries -----------------------------------------------------------------------

    def entries(self, image_id: str) -> list[Entry]:
        """Every entry of one image, read consistently."""
        params = {"KeyConditionExpression": Key("pk").eq(_IMAGE + image_id), "ConsistentRead": True}
        return [_entry(i) for i in _items(self._table.query, f"label entries of {image_id}", params)]

    def add(self, entry: Entry) -> bool:
        """Write a new entry and count it; False when it exists already (nothing counted twice)."""
        return self._transact(f"add label {entry.key} of {entry.image_id}", self._adding(entry))

    def add_many(self, entries: list[Entry]) -> int:
        """add() for each entry, in as few transactions as fit; how many were new."""
        return self._in_chunks(entries, self._adding, self.add)

    def remove_many(self, entries: list[Entry]) -> int:
        """remove() for each entry, in as few transactions as fit; how many were there."""
        return self._in_chunks(entries, self._removing, self.remove)

    def _in_chunks(self, entries: list[Entry], writes, one_by_one) -> int:
        """All of a chunk's writes in one transaction; a chunk whose condition failed somewhere, entry by entry.

        In the common case (a first write, a first delete) an image's entries take one or two round trips.
        """
        done = 0
        for start in range(0, len(entries), _ENTRIES_PER_TRANSACTION):
            chunk = entries[start:start + _ENTRIES_PER_TRANSACTION]
            if self._transact(f"{len(chunk)} labels of {chunk[0].image_id}", [w for e in chunk for w in writes(e)]):
                done += len(chunk)
            else:   # some were written (or removed) already: a redelivery or a racing writer
                done += sum(one_by_one(e) for e in chunk)
        return done

    def _adding(self, entry: Entry) -> list[dict]:
        return [{"Put": {"TableName": self.name, "Item": _entry_item(entry),
                         "ConditionExpression": "attribute_not_exists(pk)"}}, *self._counts(entry, 1)]

    def rewrite(self, entry: Entry) -> None:
        """Change an existing entry's confidence or name in place (its counts stay); a gone entry stays gone."""
        try:
            with translated(f"rewrite label {entry.key} of {entry.image_id}"):
                self._table.put_item(Item=_entry_item(entry), ConditionExpression=Attr("pk").exists()
                                     & Attr("album").eq(entry.album))
        except ConditionFailed:
            log.info("label %s of %s went meanwhile; not written back", entry.key, entry.image_id)

    def remove(self, entry: Entry) -> bool:
        """Delete an entry and uncount it; False when it was gone already (nothing uncounted twice)."""
        return self._transact(f"remove label {entry.key} of {entry.image_id}", self._removing(entry))

    def _removing(self, entry: Entry) -> list[dict]:
        return [{"Delete": {"TableName": self.name, "Key": {"pk": _IMAGE + entry.image_id, "sk": entry.key},
                            "ConditionExpression": "attribute_exists(pk) AND album = :album",
                            "ExpressionAttributeValues": {":album": entry.album}}},
                *self._counts(entry, -1)]

    def _counts(self, entry: Entry, step: int) -> list[dict]:
        keys = (_TERM + entry.key,) if is_term_key(entry.key) else (_ALL + entry.key, f"{_ALBUM}{entry.album}#{entry.key}")
        return [{"Update": {"TableName": self.name, "Key": ({"pk": _COUNT + entry.owner, "sk": sk}),
                            "UpdateExpression": "ADD n :step SET #name = :name",
                            "ExpressionAttributeNames": {"#name": "name"},
                            "ExpressionAttributeValues": {":step": step, ":name": entry.name}}}
                for sk in keys]

    def _transact(self, what: str, writes: list[dict]) -> bool:
        """One transaction; False when its entry's condition failed (cancelled, nothing written)."""
        try:
            with translated(what):
                try:
                    self._client.transact_write_items(TransactItems=writes)
                except ClientError as exc:
                    reasons = exc.response.get("CancellationReasons") or []
                    if error_code(exc) == "TransactionCanceledException" and \
                            any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                        raise ConditionFailed(what) from exc
                    raise
        except ConditionFailed:
            return False
        return True

    # --- searches and counts ---------------------------------------------------------------------------

    def search(self, owner: str, key: str, album: str | None = None, min_confidence: float = 0.0,
               limit: int = 20, start: dict | None = None) -> tuple[list[Entry], dict | None]:
        """One page of owner's entries of one label (one album's), newest first, at least min_confidence.

        Returns the entries and the key to go on from (None after the last); a page may hold fewer than
        limit entries when the confidence floor left some out.
        """
        condition = Key("owner_label").eq(owner_label(owner, key))
        params: dict = {"IndexName": OWNER_LABEL_INDEX, "ScanIndexForward": False, "Limit": limit}
        if album:
            params["IndexName"] = OWNER_LABEL_ALBUM_INDEX
            condition = condition & Key("album_at").begins_with(album + "/")
        params["KeyConditionExpression"] = condition
        if min_confidence > 0:
            params["FilterExpression"] = Attr("confidence").gte(Decimal(str(min_confidence)))
        if start:
            params["ExclusiveStartKey"] = start
        with translated(f"search label {key} of {owner}"):
            reply = self._table.query(**params)
        return [_entry(i) for i in reply.get("Items", [])], reply.get("LastEvaluatedKey")

    def counts(self, owner: str, album: str | None = None) -> list[dict]:
        """Owner's labels (in one album) with how many images carry each, most frequent first."""
        prefix = f"{_ALBUM}{album}#" if album else _ALL
        params = {"KeyConditionExpression": Key("pk").eq(_COUNT + owner) & Key("sk").begins_with(prefix),
                  "ConsistentRead": True}
        found = [{"name": i["name"], "key": i["sk"][len(prefix):], "count": int(i["n"])}
                 for i in _items(self._table.query, f"label counts of {owner}", params)]
        found = [c for c in found if c["count"] > 0]
        return sorted(found, key=lambda c: (-c["count"], c["key"]))

    def term_count(self, owner: str, key: str) -> int:
        """How many of owner's images a search term finds (sightfleet/findterms.py)."""
        with translated(f"term count of {owner}"):
            item = self._table.get_item(Key={"pk": _COUNT + owner, "sk": _TERM + key}, ConsistentRead=True).get("Item")
        return max(int(item["n"]), 0) if item else 0

    def forget_owner(self, owner: str) -> int:
        """Delete every count of one owner (their entries go with their images); how many were deleted."""
        params = {"KeyConditionExpression": Key("pk").eq(_COUNT + owner), "ProjectionExpression": "pk, sk"}
        keys = [{"pk": i["pk"], "sk": i["sk"]} for i in _items(self._table.query, f"counts of {owner}", params)]
        with translated(f"forget label counts of {owner}"):
            with self._table.batch_writer() as batch:
                for key in keys:
                    batch.delete_item(Key=key)
        return len(keys)

    def check(self) -> None:
        with translated(f"table {self.name}"):
            self._client.describe_table(TableName=self.name)


def labels_table_spec(name: str) -> dict:
    """CreateTable's arguments for the label table and its two search indexes (provisioning and the stack)."""
    def index(index_name: str, range_key: str) -> dict:
        return {"IndexName": index_name, "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": "owner_label", "KeyType": "HASH"},
                              {"AttributeName": range_key, "KeyType": "RANGE"}]}
    return {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"}
                                 for a in ("pk", "sk", "owner_label", "at", "album_at")],
        "GlobalSecondaryIndexes": [index(OWNER_LABEL_INDEX, "at"), index(OWNER_LABEL_ALBUM_INDEX, "album_at")],
    }
