"""What the worker, controller and web tier need of each AWS service, as typed interfaces.

The thin modules in sightfleet/aws implement them with boto3; sightfleet/memory implements them
in memory, so unit tests can make any single call fail (as dramatiq's stub broker stands in for a
real broker). Every method raises only the project's errors (sightfleet.errors).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Mapping
from typing import Any, Protocol

from sightfleet.contracts import ResultDoc

# Fleet-table kinds (partition keys): worker heartbeats keyed by instance id, controller decisions by ISO time.
HEARTBEAT_KIND = "worker"
# The partition key every result item carries in the results table's listing indexes.
RESULT_KIND = "image"
# An every-owner listing (admins); any other owner value lists that owner's images only.
EVERY_OWNER = None
DECISION_KIND = "decision"
LIVE_STATES = ("pending", "running")
# A warm pool's instances: stopped (hibernated where the instance allows it), not billed for compute.
POOLED_STATES = ("stopping", "stopped")
# What EC2 still lists: live instances and those ended recently (about an hour on AWS).
ALL_STATES = LIVE_STATES + ("shutting-down", "terminated", "stopping", "stopped")


@dataclass(frozen=True)
class Message:
    """A received message and what is needed to acknowledge it."""

    id: str
    receipt: str
    body: str
    receive_count: int


@dataclass(frozen=True)
class Instance:
    """What the controller and the local host need to know of one instance."""

    id: str
    state: str
    launched_at: datetime
    tags: dict = field(default_factory=dict)
    # When it was last started again from the pool, and when it last went to the pool (None: never).
    started_at: datetime | None = None
    pooled_at: datetime | None = None

    @property
    def up_since(self) -> datetime:
        """When it last began running: its launch, or its latest start from the pool."""
        return max(self.launched_at, self.started_at or self.launched_at)


class JobQueue(Protocol):
    """One queue: the request, response or dead-letter queue."""

    name: str

    def send(self, body: str, delay_s: int = 0) -> str:
        """Send one message; returns its message id."""

    def receive(self, max_messages: int = 10, wait_s: int = 20, visibility_s: int | None = None) -> list[Message]:
        """Long-poll for up to max_messages messages."""

    def send_batch(self, bodies: list[str]) -> list[int]:
        """Send messages; returns the positions of those not sent (each one's fate is its own)."""

    def delete_batch(self, receipts: list[str]) -> list[str]:
        """Delete messages; returns the receipts not deleted."""

    def set_visibility(self, receipts: list[str], seconds: int) -> list[str]:
        """Extend (or with 0, give back) the messages' visibility; returns the receipts not changed."""

    def counts(self) -> dict[str, int]:
        """Approximate visible, in-flight and delayed message counts."""

    def max_message_bytes(self) -> int:
        """The queue's MaximumMessageSize."""


class ObjectStore(Protocol):
    """One bucket; keys are made by the project, never taken from users."""

    name: str

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes:
        """The object's bytes; NoSuchObject when it is not stored (NotFound when the bucket is missing)."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored under key."""

    def delete(self, key: str) -> None: ...

    def presigned_url(self, key: str, expires_s: int = 900) -> str: ...

    def check(self) -> None:
        """Raise unless the bucket is reachable."""


def album_at(result: Mapping[str, Any]) -> str:
    """The owner-album index's sort key: an album's images together, newest last ("/" is in no album name)."""
    return f"{result['album']}/{result['submitted_at']}"


def listing_key(result: Mapping[str, Any], owner: str | None, album: str | None) -> dict:
    """The key that continues a newest-first listing (of owner's images, or every owner's) right after result."""
    key = {"id": result["id"]}
    if owner:
        key["owner"] = owner
        key.update({"album_at": album_at(result)} if album else {"submitted_at": result["submitted_at"]})
    else:
        key["submitted_at"] = result["submitted_at"]
        key.update({"album": result["album"]} if album else {"kind": RESULT_KIND})
    return key


def listing_key_fits(key: dict, owner: str | None, album: str | None) -> bool:
    """True when key (from a client's cursor) can continue the listing of owner's (or every owner's) album."""
    expected = {"id", "owner", "album_at" if album else "submitted_at"} if owner else \
        {"id", "submitted_at", "album" if album else "kind"}
    if set(key) != expected or key.get("owner", owner) != owner:
        return False
    if owner and album:
        return key["album_at"].startswith(album + "/")
    return key.get("album", album) == album and key.get("kind", RESULT_KIND) == RESULT_KIND


def listing_key_time(key: dict) -> str:
    """The submitted_at a listing key continues from."""
    return key["album_at"].rsplit("/", 1)[-1] if "album_at" in key else key["submitted_at"]


class ResultStore(Protocol):
    """One result document per image id; writes are conditional on the status."""

    def create(self, result: ResultDoc) -> None:
        """Write a new QUEUED result; ConditionFailed if the id exists."""

    def get(self, image_id: str) -> ResultDoc:
        """The current result; NoSuchResult if unknown."""

    def get_many(self, image_ids: list[str]) -> list[ResultDoc]: ...

    def start(self, result: ResultDoc) -> None:
        """Mark PROCESSING unless already final; ConditionFailed when final."""

    def finish(self, result: ResultDoc) -> None:
        """Write the final result once; ConditionFailed when someone already did."""

    def requeue(self, result: ResultDoc) -> None:
        """Put a claimed job back to QUEUED unless final; ConditionFailed when final."""

    def delete(self, image_id: str) -> None: ...

    def replace(self, result: ResultDoc, status: str, updated_at: str) -> None:
        """Overwrite the row only while it has this status and updated_at (reprocessing, an operator's retry);
        ConditionFailed otherwise."""

    def replace_with_tombstone(self, tombstone: ResultDoc) -> bool:
        """Replace the row with a deleted image's tombstone (contracts.tombstone): listed nowhere, never
        overwritten by start, finish or requeue, expiring at its expires_at. False when it was one already."""

    def page(self, album: str | None = None, status: str | None = None, limit: int = 20,
             cursor: dict | None = None, owner: str | None = EVERY_OWNER) -> tuple[list[ResultDoc], dict | None]:
        """Newest first, of one owner (or every owner), optionally one album and one status; the cursor is
        None after the last page. One owner's listing leaves out rows from before owners existed."""

    def albums(self, owner: str) -> list[str]:
        """One owner's album names, sorted (by a query, never a scan)."""

    def completed_since(self, since_iso: str) -> list[ResultDoc]: ...

    def check(self) -> None: ...


class FleetLog(Protocol):
    """Worker heartbeats and controller decisions, by kind and key."""

    def put(self, kind: str, key: str, doc: dict, ttl_s: int = 86400) -> None: ...

    def all(self, kind: str, since_key: str | None = None, newest_first: bool = False,
            limit: int | None = None) -> list[dict]: ...

    def get_many(self, kind: str, keys: list[str]) -> dict[str, dict]: ...

    def delete(self, kind: str, key: str) -> None: ...


class FleetControl(Protocol):
    """The stack's worker instances."""

    def instances(self, states: tuple[str, ...] = LIVE_STATES) -> list[Instance]:
        """The stack's workers in these states, oldest first."""

    def launch(self, count: int, user_data: str) -> list[str]: ...

    def terminate(self, instance_ids: list[str]) -> None: ...

    def start(self, instance_ids: list[str]) -> None:
        """Start stopped instances again (StartInstances); each one's start time is recorded."""

    def stop(self, instance_ids: list[str], hibernate: bool = True) -> bool:
        """Stop instances into the pool, hibernated when possible; True if they hibernate, False: plain stop."""


class MetricsSink(Protocol):
    """The stack's metrics namespace."""

    def put(self, values: dict[str, float], unit: str = "Count", dimensions: dict[str, str] | None = None,
            storage_resolution: int = 1, timestamp: datetime | None = None) -> None: ...

    def series(self, names: list[str], start: datetime, end: datetime, period_s: int = 60,
               stat: str = "Average") -> dict[str, list[tuple[datetime, float]]]:
        """Each metric's datapoints between start and end, oldest first."""


class LimitsStore(Protocol):
    """Counters shared by every web process: fixed windows of hits by key, and images held per owner
    (sightfleet/aws/limits.py's LimitsTable; sightfleet/memory.py's MemoryLimits)."""

    def hit(self, key: str, window_s: int, amount: int = 1) -> int:
        """Add amount to key's window (a new one of window_s when it ended); the window's count after it."""

    def give_back(self, key: str, amount: int) -> None:
        """Take amount off key's current window again."""

    def reserve(self, owner: str, count: int, limit: int) -> bool:
        """Count count more images for owner if that keeps it within limit; False (nothing counted) if not."""

    def release(self, owner: str, count: int) -> None:
        """Count count images fewer for owner, never below zero."""

    def held(self, owner: str) -> int:
        """How many images owner holds, as counted."""


# Accounts and sign-in: implemented by sightfleet/aws/accounts.py and sightfleet/memory.py.
class AccountStore(Protocol):
    """Accounts by user name, API keys and one-time sign-in links by the hash of their secret."""

    def put_account(self, account: dict) -> None:
        """Write a new account; ConditionFailed when the name is taken."""

    def update_account(self, account: dict) -> None:
        """Rewrite an existing account; ConditionFailed when it no longer exists."""

    def get_account(self, name: str) -> dict | None: ...

    def accounts(self) -> list[dict]: ...

    def delete_account(self, name: str) -> None: ...

    def put_key(self, key_hash: str, key: dict) -> None: ...

    def get_key(self, key_hash: str) -> dict | None:
        """The key with this hash, read consistently; None when unknown or revoked."""

    def keys_of(self, account_id: str) -> list[dict]:
        """One account's keys, oldest first, each with its `key_hash`."""

    def key_hash_of(self, key_id: str) -> str | None: ...

    def delete_key(self, key_hash: str) -> bool:
        """Revoke a key; False when there was none."""

    def put_access_key(self, key_id: str, key: dict) -> None: ...

    def get_access_key(self, key_id: str) -> dict | None:
        """The SigV4 access key with this id, read consistently; None when unknown or revoked."""

    def access_keys_of(self, account_id: str) -> list[dict]:
        """One account's access keys, oldest first."""

    def delete_access_key(self, key_id: str) -> bool:
        """Revoke an access key; False when there was none."""

    def touch_key(self, key_hash: str, when: str) -> None:
        """Record the key's last use (nothing when it was revoked meanwhile)."""

    def replace_password_hash(self, name: str, old: str, new: str) -> bool:
        """Swap the account's password hash if it is still `old` (nothing else changes); False if not."""

    def put_link(self, token_hash: str, link: dict) -> None: ...

    def take_link(self, token_hash: str) -> dict | None:
        """Remove the link and return it; only one caller gets it."""

    def check(self) -> None: ...


class LabelIndex(Protocol):
    """Which of an owner's images carry which label, and each owner's label counts (sightfleet/labelindex.py)."""

    def entries(self, image_id: str) -> list:
        """Every index entry of one image (labelindex.Entry), read consistently."""

    def add(self, entry) -> bool:
        """Write a new entry and count it; False when it existed already."""

    def rewrite(self, entry) -> None:
        """Change an existing entry's confidence in place; a gone entry stays gone."""

    def remove(self, entry) -> bool:
        """Delete an entry and uncount it; False when it was gone already."""

    def add_many(self, entries: list) -> int:
        """add() each entry (in as few round trips as the store allows); how many were new."""

    def remove_many(self, entries: list) -> int:
        """remove() each entry (in as few round trips as the store allows); how many were there."""

    def search(self, owner: str, key: str, album: str | None = None, min_confidence: float = 0.0,
               limit: int = 20, start: dict | None = None) -> tuple[list, dict | None]:
        """A page of owner's entries of one label key, newest first, and the key to go on from."""

    def counts(self, owner: str, album: str | None = None) -> list[dict]:
        """{name, key, count} of owner's labels (in one album), most frequent first."""

    def term_count(self, owner: str, key: str) -> int:
        """How many of owner's images one search term (sightfleet/findterms.py) finds."""

    def forget_owner(self, owner: str) -> int:
        """Delete one owner's counts (a deleted account)."""

    def check(self) -> None: ...
