"""In-memory implementations of sightfleet.interfaces, with failures to inject, for unit tests.

Like dramatiq's stub broker: real behaviour (visibility timeouts, receive counts, redrive to a
dead-letter queue, conditional writes), no network. `Faults` makes any single call fail:
`faults.fail("results.finish", times=1)` makes the next ResultsTable.finish raise Unavailable.
Tests of the AWS modules themselves and end-to-end tests use the real local endpoint instead.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, cast

from sightfleet.config import Settings
from sightfleet.contracts import DELETED, PROCESSING, QUEUED, ResultDoc, owner_of
from sightfleet.errors import ConditionFailed, Invalid, NoSuchObject, NoSuchResult, Unavailable
from sightfleet.interfaces import LIVE_STATES, Instance, Message, listing_key, listing_key_time
from sightfleet.findterms import is_term_key
from sightfleet.labelindex import Entry, search_key, search_key_order
from sightfleet.resources import Resources


@dataclass
class _Rule:
    error: Callable[[], Exception]
    times: int | None       # None: every call
    when: Callable[..., bool] | None


class Faults:
    """Failures to inject, by call name ("<resource>.<method>", e.g. "inputs.get"); counts every call."""

    def __init__(self):
        self._rules: dict[str, list[_Rule]] = {}
        self._lock = threading.Lock()
        self.calls: Counter = Counter()

    def fail(self, call: str, error: Exception | type[Exception] = Unavailable, times: int | None = None,
             when: Callable[..., bool] | None = None) -> None:
        """Make `call` raise error (an instance or class), the next `times` times or always, when `when(*args)`."""
        make_error = (lambda: error(f"injected failure of {call}")) if isinstance(error, type) else (lambda: error)
        with self._lock:
            self._rules.setdefault(call, []).append(_Rule(make_error, times, when))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def check(self, call: str, *args) -> None:
        """Count the call, and raise if a rule says it fails."""
        with self._lock:
            self.calls[call] += 1
            for rule in self._rules.get(call, []):
                if rule.times == 0 or (rule.when and not rule.when(*args)):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                raise rule.error()


class _Part:
    """One in-memory resource: its name in fault rules and the faults it obeys."""

    def __init__(self, role: str, faults: Faults):
        self._role = role
        self._faults = faults
        self._lock = threading.RLock()

    def _call(self, method: str, *args) -> None:
        self._faults.check(f"{self._role}.{method}", *args)


@dataclass
class _Stored:
    id: str
    body: str
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str | None = None


class MemoryQueue(_Part):
    """A queue with SQS's visibility, receive counts and redrive (after max_receives receives)."""

    def __init__(self, role: str, name: str, faults: Faults, dead_letters: "MemoryQueue | None" = None,
                 max_receives: int = 3, visibility_s: float = 60, max_bytes: int = 262144):
        super().__init__(role, faults)
        self.name = name
        self._messages: dict[str, _Stored] = {}
        self._dead_letters = dead_letters
        self._max_receives = max_receives
        self._visibility_s = visibility_s
        self._max_bytes = max_bytes
        self._arrived = threading.Condition(self._lock)

    def send(self, body: str, delay_s: int = 0) -> str:
        self._call("send", body)
        with self._lock:
            stored = _Stored(uuid.uuid4().hex, body, visible_at=time.monotonic() + delay_s if delay_s else 0.0)
            self._messages[stored.id] = stored
            self._arrived.notify_all()
        return stored.id

    def receive(self, max_messages: int = 10, wait_s: int = 20, visibility_s: int | None = None) -> list[Message]:
        self._call("receive", max_messages, wait_s)
        deadline = time.monotonic() + wait_s
        with self._lock:
            while True:
                got = self._take(max_messages, self._visibility_s if visibility_s is None else visibility_s)
                left = deadline - time.monotonic()
                if got or left <= 0:
                    return got
                self._arrived.wait(min(left, 0.05))

    def _take(self, max_messages: int, visibility_s: float) -> list[Message]:
        now, got = time.monotonic(), list[Message]()
        for stored in list(self._messages.values()):
            if len(got) == max_messages:
                break
            if stored.visible_at > now:
                continue
            if self._dead_letters is not None and stored.receive_count >= self._max_receives:
                del self._messages[stored.id]   # redrive, as SQS does on the receive after the last
                self._dead_letters.send(stored.body)
                continue
            stored.receive_count += 1
            stored.visible_at = now + visibility_s
            stored.receipt = uuid.uuid4().hex
            got.append(Message(stored.id, stored.receipt, stored.body, stored.receive_count))
        return got

    def send_batch(self, bodies: list[str]) -> list[int]:
        self._call("send_batch", bodies)
        for body in bodies:
            self.send(body)
        return []

    def delete_batch(self, receipts: list[str]) -> list[str]:
        self._call("delete_batch", receipts)
        with self._lock:
            by_receipt = {m.receipt: m for m in self._messages.values()}
            for receipt in receipts:
                if receipt in by_receipt:
                    del self._messages[by_receipt[receipt].id]
        return [r for r in receipts if r not in by_receipt]

    def set_visibility(self, receipts: list[str], seconds: int) -> list[str]:
        self._call("set_visibility", receipts, seconds)
        with self._lock:
            by_receipt = {m.receipt: m for m in self._messages.values()}
            for receipt in receipts:
                if receipt in by_receipt:
                    by_receipt[receipt].visible_at = time.monotonic() + seconds
            self._arrived.notify_all()
        return [r for r in receipts if r not in by_receipt]

    def counts(self) -> dict[str, int]:
        self._call("counts")
        now = time.monotonic()
        with self._lock:
            visible = sum(1 for m in self._messages.values() if m.visible_at <= now)
        return {"visible": visible, "in_flight": len(self._messages) - visible, "delayed": 0}

    def max_message_bytes(self) -> int:
        self._call("max_message_bytes")
        return self._max_bytes

    def bodies(self) -> list[str]:
        """Every message still in the queue, visible or not (for assertions)."""
        with self._lock:
            return [m.body for m in self._messages.values()]


class MemoryBucket(_Part):
    def __init__(self, role: str, name: str, faults: Faults):
        super().__init__(role, faults)
        self.name = name
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call("put", key)
        with self._lock:
            self.objects[key] = (bytes(data), content_type)

    def get(self, key: str) -> bytes:
        self._call("get", key)
        with self._lock:
            if key not in self.objects:
                raise NoSuchObject(f"get memory://{self.name}/{key}: NoSuchKey")
            return self.objects[key][0]

    def exists(self, key: str) -> bool:
        self._call("exists", key)
        with self._lock:
            return key in self.objects

    def delete(self, key: str) -> None:
        self._call("delete", key)
        with self._lock:
            self.objects.pop(key, None)

    def presigned_url(self, key: str, expires_s: int = 900) -> str:
        self._call("presigned_url", key)
        return f"memory://{self.name}/{key}?expires={expires_s}"

    def check(self) -> None:
        self._call("check")


class MemoryResultsTable(_Part):
    """Result documents by id, with the status conditions of the DynamoDB table."""

    def __init__(self, faults: Faults):
        super().__init__("results", faults)
        self.docs: dict[str, dict] = {}
        self.writes: list[dict] = []   # every document written, in order (to check nothing is rewritten)

    def create(self, result: ResultDoc) -> None:
        self._call("create", result)
        self._put(result, lambda current, _: current is None)

    def get(self, image_id: str) -> ResultDoc:
        self._call("get", image_id)
        with self._lock:
            if image_id not in self.docs:
                raise NoSuchResult(f"no image {image_id}")
            return json.loads(json.dumps(self.docs[image_id]))

    def get_many(self, image_ids: list[str]) -> list[ResultDoc]:
        self._call("get_many", image_ids)
        with self._lock:
            return [json.loads(json.dumps(self.docs[i])) for i in image_ids if i in self.docs]

    def start(self, result: ResultDoc) -> None:
        self._call("start", result)
        self._put(result, _not_final)

    def finish(self, result: ResultDoc) -> None:
        self._call("finish", result)
        self._put(result, _not_final)

    def requeue(self, result: ResultDoc) -> None:
        self._call("requeue", result)
        self._put(result, _not_final)

    def _put(self, result: ResultDoc, allowed: Callable[[dict | None, Mapping], bool]) -> None:
        with self._lock:
            if not allowed(self.docs.get(result["id"]), result):
                raise ConditionFailed(f"result {result['id']}: ConditionalCheckFailedException")
            doc = json.loads(json.dumps(result))   # stored as JSON, like the table's doc attribute
            self.docs[result["id"]] = doc
            self.writes.append(doc)

    def replace(self, result: ResultDoc, status: str, updated_at: str) -> None:
        self._call("replace", result)
        self._put(result, lambda current, _new: current is not None and current.get("status") == status
                  and current.get("updated_at") == updated_at)

    def delete(self, image_id: str) -> None:
        self._call("delete", image_id)
        with self._lock:
            self.docs.pop(image_id, None)

    def replace_with_tombstone(self, tombstone: ResultDoc) -> bool:
        self._call("replace_with_tombstone", tombstone)
        with self._lock:
            if self.docs.get(tombstone["id"], {}).get("status") == tombstone["status"]:
                return False
            self.docs[tombstone["id"]] = json.loads(json.dumps(tombstone))
        return True

    def page(self, album: str | None = None, status: str | None = None, limit: int = 20,
             cursor: dict | None = None, owner: str | None = None) -> tuple[list[ResultDoc], dict | None]:
        self._call("page", album, status, limit, cursor, owner)
        with self._lock:
            found = sorted((d for d in self._listed(owner) if (album is None or d["album"] == album)
                            and (status is None or d["status"] == status)),
                           key=lambda d: (d["submitted_at"], d["id"]), reverse=True)
        if cursor:
            after = (listing_key_time(cursor), cursor["id"])
            found = [d for d in found if (d["submitted_at"], d["id"]) < after]
        page = found[:limit]
        more = len(found) > limit
        return page, (listing_key(page[-1], owner, album) if more else None)

    def _listed(self, owner: str | None) -> list[ResultDoc]:
        """The rows a listing sees, as the indexes do: no tombstones; one owner's leaves out rows without one."""
        return [cast(ResultDoc, d) for d in self.docs.values() if d.get("status") != DELETED
                and (owner is None or d.get("owner") == owner)]

    def albums(self, owner: str) -> list[str]:
        self._call("albums", owner)
        with self._lock:
            return sorted({d["album"] for d in self._listed(owner)})

    def completed_since(self, since_iso: str) -> list[ResultDoc]:
        self._call("completed_since", since_iso)
        with self._lock:
            return [cast(ResultDoc, d) for d in self.docs.values() if (d.get("completed_at") or "") >= since_iso]

    def check(self) -> None:
        self._call("check")


TERMS = "term#"   # a search term's count: the owner's only (not an album name: those hold no "#")


class MemoryLabels(_Part):
    """The label index and counts, with the table's conditions (an entry is counted once, uncounted once)."""

    def __init__(self, faults: Faults):
        super().__init__("labels", faults)
        self.items: dict[tuple[str, str], Entry] = {}
        self.tally: Counter = Counter()   # (owner, album or None or TERMS, key) -> images
        self.names: dict[str, str] = {}

    def entries(self, image_id: str) -> list[Entry]:
        self._call("entries", image_id)
        with self._lock:
            return [e for (i, _), e in sorted(self.items.items()) if i == image_id]

    def add(self, entry: Entry) -> bool:
        self._call("add", entry)
        return self._change(entry, 1, lambda current: current is None)

    def rewrite(self, entry: Entry) -> None:
        self._call("rewrite", entry)
        with self._lock:
            current = self.items.get((entry.image_id, entry.key))
            if current is not None and current.album == entry.album:
                self.items[(entry.image_id, entry.key)] = entry

    def remove(self, entry: Entry) -> bool:
        self._call("remove", entry)
        return self._change(entry, -1, lambda current: current is not None and current.album == entry.album)

    def add_many(self, entries: list[Entry]) -> int:
        return sum(self.add(entry) for entry in entries)

    def remove_many(self, entries: list[Entry]) -> int:
        return sum(self.remove(entry) for entry in entries)

    def _change(self, entry: Entry, step: int, allowed: Callable[[Entry | None], bool]) -> bool:
        with self._lock:
            if not allowed(self.items.get((entry.image_id, entry.key))):
                return False
            if step > 0:
                self.items[(entry.image_id, entry.key)] = entry
            else:
                del self.items[(entry.image_id, entry.key)]
            for album in ((TERMS,) if is_term_key(entry.key) else (None, entry.album)):
                self.tally[(entry.owner, album, entry.key)] += step
            self.names[entry.key] = entry.name
            return True

    def search(self, owner: str, key: str, album: str | None = None, min_confidence: float = 0.0,
               limit: int = 20, start: dict | None = None) -> tuple[list[Entry], dict | None]:
        self._call("search", owner, key)
        with self._lock:
            found = sorted((e for e in self.items.values() if e.owner == owner and e.key == key
                            and (album is None or e.album == album)),
                           key=lambda e: (e.submitted_at, e.image_id), reverse=True)
        if start:
            found = [e for e in found if (e.submitted_at, e.image_id) < search_key_order(start)]
        page = found[:limit]
        more = len(found) > limit
        return [e for e in page if e.confidence >= min_confidence], search_key(page[-1], album) if more else None

    def counts(self, owner: str, album: str | None = None) -> list[dict]:
        self._call("counts", owner, album)
        with self._lock:
            found = [{"name": self.names[k], "key": k, "count": n} for (o, a, k), n in self.tally.items()
                     if o == owner and a == album and n > 0]
        return sorted(found, key=lambda c: (-c["count"], c["key"]))

    def term_count(self, owner: str, key: str) -> int:
        self._call("term_count", owner, key)
        with self._lock:
            return max(self.tally[(owner, TERMS, key)], 0)

    def forget_owner(self, owner: str) -> int:
        self._call("forget_owner", owner)
        with self._lock:
            mine = [k for k in self.tally if k[0] == owner]
            for k in mine:
                del self.tally[k]
        return len(mine)

    def check(self) -> None:
        self._call("check")


def _not_final(current: dict | None, result: Mapping) -> bool:
    """The table's condition: a missing row, or one of the same owner still QUEUED or PROCESSING (not final, not a
    tombstone)."""
    return current is None or (current.get("status") in (QUEUED, PROCESSING) and owner_of(current) == owner_of(result))


class MemoryFleetTable(_Part):
    def __init__(self, faults: Faults):
        super().__init__("fleet_log", faults)
        self.items: dict[tuple[str, str], dict] = {}

    def put(self, kind: str, key: str, doc: dict, ttl_s: int = 86400) -> None:
        self._call("put", kind, key, doc)
        with self._lock:
            self.items[(kind, key)] = json.loads(json.dumps(doc))

    def all(self, kind: str, since_key: str | None = None, newest_first: bool = False,
            limit: int | None = None) -> list[dict]:
        self._call("all", kind)
        with self._lock:
            keys = sorted((k for k in self.items if k[0] == kind and (since_key is None or k[1] >= since_key)),
                          reverse=newest_first)
            return [self.items[k] for k in itertools.islice(keys, limit)]

    def get_many(self, kind: str, keys: list[str]) -> dict[str, dict]:
        self._call("get_many", kind, keys)
        with self._lock:
            return {k: self.items[(kind, k)] for k in keys if (kind, k) in self.items}

    def delete(self, kind: str, key: str) -> None:
        self._call("delete", kind, key)
        with self._lock:
            self.items.pop((kind, key), None)


class MemoryFleet(_Part):
    """Instances as moto keeps them: running from launch, stopped and started again, until terminated."""

    def __init__(self, faults: Faults):
        super().__init__("fleet", faults)
        self.states: dict[str, Instance] = {}
        self._ids = itertools.count(1)

    def instances(self, states: tuple[str, ...] = LIVE_STATES) -> list[Instance]:
        self._call("instances", states)
        with self._lock:
            found = [i for i in self.states.values() if i.state in states]
        return sorted(found, key=lambda i: (i.launched_at, i.id))

    def launch(self, count: int, user_data: str) -> list[str]:
        self._call("launch", count)
        with self._lock:
            ids = [f"i-{next(self._ids):017x}" for _ in range(count)]
            now = datetime.now(timezone.utc)
            self.states.update({i: Instance(i, "running", now) for i in ids})
        return ids

    def add(self, instance_id: str, state: str = "running", launched_at: datetime | None = None,
            pooled_at: datetime | None = None) -> None:
        """An instance that exists already (for arranging a test)."""
        with self._lock:
            self.states[instance_id] = Instance(instance_id, state, launched_at or datetime.now(timezone.utc),
                                                pooled_at=pooled_at)

    def terminate(self, instance_ids: list[str]) -> None:
        self._call("terminate", list(instance_ids))
        known = [i for i in instance_ids if i in self.states]   # as before: ids never seen are let pass
        self._move(known, "terminated", ("pending", "running", "stopping", "stopped", "terminated"))

    def start(self, instance_ids: list[str]) -> None:
        self._call("start", list(instance_ids))
        self._move(instance_ids, "running", ("pending", "running", "stopped"), started_at=_utc_now())

    def stop(self, instance_ids: list[str], hibernate: bool = True) -> bool:
        self._call("stop", list(instance_ids), hibernate)
        self._move(instance_ids, "stopped", ("running", "stopping", "stopped"), pooled_at=_utc_now())
        return hibernate

    def _move(self, instance_ids: list[str], state: str, allowed_from: tuple[str, ...], **times) -> None:
        """EC2's transitions: IncorrectInstanceState (Invalid) unless every instance may make this one."""
        with self._lock:
            for instance_id in instance_ids:
                current = self.states.get(instance_id)
                if current is None or current.state not in allowed_from:
                    raise Invalid(f"{instance_id} cannot become {state} from "
                                  f"{current.state if current else 'unknown'}: IncorrectInstanceState")
            for instance_id in instance_ids:
                self.states[instance_id] = replace(self.states[instance_id], state=state, **times)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class MemoryMetrics(_Part):
    def __init__(self, faults: Faults):
        super().__init__("metrics", faults)
        self.points: list[tuple[datetime, str, float]] = []

    def put(self, values: dict[str, float], unit: str = "Count", dimensions: dict[str, str] | None = None,
            storage_resolution: int = 1, timestamp: datetime | None = None) -> None:
        self._call("put", values)
        at = timestamp or datetime.now(timezone.utc)
        with self._lock:
            self.points.extend((at, name, float(value)) for name, value in values.items())

    def series(self, names: list[str], start: datetime, end: datetime, period_s: int = 60,
               stat: str = "Average") -> dict[str, list[tuple[datetime, float]]]:
        """Each metric's raw datapoints between start and end (no aggregation into periods)."""
        self._call("series", names)
        with self._lock:
            return {name: sorted((at, value) for at, n, value in self.points if n == name and start <= at <= end)
                    for name in names}


class MemoryLimits(_Part):
    """The limits table's fixed windows and per-owner image counts, with its conditions."""

    def __init__(self, faults: Faults, clock: Callable[[], float] = time.time):
        super().__init__("limits", faults)
        self.windows: dict[str, tuple[int, float]] = {}   # key -> (hits, ends at)
        self.images: dict[str, int] = {}
        self._clock = clock

    def hit(self, key: str, window_s: int, amount: int = 1) -> int:
        self._call("hit", key, amount)
        with self._lock:
            hits, ends = self.windows.get(key, (0, 0.0))
            if ends <= self._clock():
                hits, ends = 0, self._clock() + window_s
            self.windows[key] = (hits + amount, ends)
            return hits + amount

    def give_back(self, key: str, amount: int) -> None:
        self._call("give_back", key, amount)
        with self._lock:
            hits, ends = self.windows.get(key, (0, 0.0))
            if ends > self._clock():
                self.windows[key] = (hits - amount, ends)

    def reserve(self, owner: str, count: int, limit: int) -> bool:
        self._call("reserve", owner, count)
        with self._lock:
            if self.images.get(owner, 0) > limit - count:
                return False
            self.images[owner] = self.images.get(owner, 0) + count
            return True

    def release(self, owner: str, count: int) -> None:
        self._call("release", owner, count)
        with self._lock:
            self.images[owner] = max(0, self.images.get(owner, 0) - count)

    def held(self, owner: str) -> int:
        self._call("held", owner)
        with self._lock:
            return self.images.get(owner, 0)


def memory_resources(settings: Settings) -> tuple[Resources, Faults]:
    """A Resources made of in-memory parts, and the faults they obey."""
    names, faults = settings.names, Faults()
    dead_letters = MemoryQueue("dead_letters", names.dead_letter_queue, faults)
    requests = MemoryQueue("requests", names.request_queue, faults, dead_letters, settings.max_receive_count,
                           settings.visibility_timeout_s)
    return Resources(
        settings=settings, requests=requests, dead_letters=dead_letters,
        responses=MemoryQueue("responses", names.response_queue, faults),
        inputs=MemoryBucket("inputs", names.input_bucket, faults),
        outputs=MemoryBucket("outputs", names.output_bucket, faults),
        results=MemoryResultsTable(faults), fleet_log=MemoryFleetTable(faults),
        fleet=MemoryFleet(faults), metrics=MemoryMetrics(faults), accounts=MemoryAccounts(faults),
        labels=MemoryLabels(faults)), faults


# Accounts and sign-in: the accounts table in memory (web_tier/accounts, web_tier/auth tests).
class MemoryAccounts(_Part):
    """Accounts, keys and sign-in links with the accounts table's conditions."""

    def __init__(self, faults: Faults):
        super().__init__("accounts", faults)
        self.items: dict[str, dict] = {}

    def put_account(self, account: dict) -> None:
        self._call("put_account", account)
        self._put_new(f"account#{account['name']}", {"kind": "account", **account})

    def update_account(self, account: dict) -> None:
        self._call("update_account", account)
        with self._lock:
            if f"account#{account['name']}" not in self.items:
                raise ConditionFailed(f"account {account['name']}: ConditionalCheckFailedException")
            self.items[f"account#{account['name']}"] = {"kind": "account", **json.loads(json.dumps(account))}

    def get_account(self, name: str) -> dict | None:
        self._call("get_account", name)
        return self._get(f"account#{name}")

    def accounts(self) -> list[dict]:
        self._call("accounts")
        with self._lock:
            return sorted((dict(i) for i in self.items.values() if i["kind"] == "account"), key=lambda a: a["name"])

    def delete_account(self, name: str) -> None:
        self._call("delete_account", name)
        with self._lock:
            self.items.pop(f"account#{name}", None)

    def put_key(self, key_hash: str, key: dict) -> None:
        self._call("put_key", key_hash, key)
        self._put_new(f"key#{key_hash}", {"kind": "key", **key})

    def get_key(self, key_hash: str) -> dict | None:
        self._call("get_key", key_hash)
        return self._get(f"key#{key_hash}")

    def keys_of(self, account_id: str) -> list[dict]:
        self._call("keys_of", account_id)
        with self._lock:
            found = [{**item, "key_hash": pk.removeprefix("key#")} for pk, item in self.items.items()
                     if item["kind"] == "key" and item["account_id"] == account_id]
        return sorted(found, key=lambda key: key["created_at"])

    def key_hash_of(self, key_id: str) -> str | None:
        self._call("key_hash_of", key_id)
        with self._lock:
            return next((pk.removeprefix("key#") for pk, item in self.items.items()
                         if item["kind"] == "key" and item["key_id"] == key_id), None)

    def delete_key(self, key_hash: str) -> bool:
        self._call("delete_key", key_hash)
        with self._lock:
            return self.items.pop(f"key#{key_hash}", None) is not None

    def put_access_key(self, key_id: str, key: dict) -> None:
        self._call("put_access_key", key_id, key)
        self._put_new(f"akey#{key_id}", {"kind": "akey", **key})

    def get_access_key(self, key_id: str) -> dict | None:
        self._call("get_access_key", key_id)
        return self._get(f"akey#{key_id}")

    def access_keys_of(self, account_id: str) -> list[dict]:
        self._call("access_keys_of", account_id)
        with self._lock:
            found = [dict(item) for item in self.items.values()
                     if item["kind"] == "akey" and item["account_id"] == account_id]
        return sorted(found, key=lambda key: key["created_at"])

    def delete_access_key(self, key_id: str) -> bool:
        self._call("delete_access_key", key_id)
        with self._lock:
            return self.items.pop(f"akey#{key_id}", None) is not None

    def touch_key(self, key_hash: str, when: str) -> None:
        self._call("touch_key", key_hash, when)
        with self._lock:
            if f"key#{key_hash}" in self.items:
                self.items[f"key#{key_hash}"]["last_used_at"] = when

    def replace_password_hash(self, name: str, old: str, new: str) -> bool:
        self._call("replace_password_hash", name)
        with self._lock:
            account = self.items.get(f"account#{name}")
            if account is None or account.get("password_hash") != old:
                return False
            account["password_hash"] = new
            return True

    def put_link(self, token_hash: str, link: dict) -> None:
        self._call("put_link", token_hash, link)
        self._put_new(f"link#{token_hash}", {"kind": "link", **link})

    def take_link(self, token_hash: str) -> dict | None:
        self._call("take_link", token_hash)
        with self._lock:
            return self.items.pop(f"link#{token_hash}", None)

    def check(self) -> None:
        self._call("check")

    def _put_new(self, pk: str, item: dict) -> None:
        with self._lock:
            if pk in self.items:
                raise ConditionFailed(f"{pk}: ConditionalCheckFailedException")
            self.items[pk] = json.loads(json.dumps(item))

    def _get(self, pk: str) -> dict | None:
        with self._lock:
            item = self.items.get(pk)
            return dict(item) if item is not None else None
