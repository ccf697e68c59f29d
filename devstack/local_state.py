"""What the local AWS endpoint holds, kept on disk: S3 objects, DynamoDB items, SQS messages.

Inside the emulator process (devstack/emulator.py), `EndpointState` writes a snapshot of
moto's contents every few seconds and when asked (the supervisor asks before it stops the
endpoint), and loads it back into the queues, buckets and tables that provisioning created.
It is a snapshot of the state, not moto's recording of requests: a replayed request log
would hand out new receipt handles, message ids and instance ids, so every replayed delete,
visibility change and termination would miss (see docs/local-stack.md, "What a restart keeps").

On disk, under one folder: `state.json` (queues with their messages, tables with their items,
the object index) and `blobs/` (object bytes and large message bodies, each written once under
its content's name). Each snapshot is written to a temporary file and renamed, so a crash of the
endpoint mid-save leaves the previous snapshot whole.

Consistency: the emulator serves every request inside `RequestGate.serving()`, and a save copies
moto's queues, tables and object index in one `RequestGate.exclusive()` turn, so a snapshot
never holds half of a request, nor one step of a two-step write without the other (the web tier
sends the job message, then writes its QUEUED row; a worker writes its objects, then the row,
then deletes the message). The turn only copies values already in memory (and the bytes of
objects not yet on disk); files are written after it. A restore runs in one exclusive turn too,
objects first, then tables, then queues: no request sees a job before its photo and row are back,
and no write is overwritten by an older saved item. A long poll leaves the gate while it waits.

Not kept: EC2 instances (their worker processes end with the stack) and CloudWatch metrics.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.s3.models import s3_backends
from moto.sqs.models import Message, sqs_backends

from sightfleet.local_access import private_dir, write_private

log = logging.getLogger(__name__)
FORMAT = 1
STATE_FILE = "state.json"
BLOB_DIR = "blobs"
# Bodies up to this size travel inside state.json; larger ones (inline photos) become blobs.
INLINE_BODY_BYTES = 4096
# A snapshot past these sizes is not loaded (start fresh, keep it aside): loading it would
# take minutes and more memory than a laptop's stack should hold.
MAX_STATE_BYTES = 512 * 1024 * 1024
MAX_BLOB_BYTES = 8 * 1024 * 1024 * 1024
_MESSAGE_FIELDS = ("message_attributes", "receipt_handle", "_old_receipt_handles", "sender_id", "sent_timestamp",
                   "approximate_first_receive_timestamp", "approximate_receive_count", "deduplication_id",
                   "group_id", "sequence_number", "visible_at", "delayed_until")


class UnreadableState(Exception):
    """The saved state cannot be loaded as it is (corrupt, from another format, too large)."""


class RequestGate:
    """Many requests at once, or one exclusive turn (a snapshot's copy, a restore) with no request in progress.

    A turn waiting for the requests in progress to finish holds back new ones, so a steady stream
    of requests cannot put it off for ever.
    """

    def __init__(self):
        self._changed = threading.Condition()
        self._serving = 0
        self._exclusive = False
        self._waiting_turns = 0
        self._inside = threading.local()  # whether this thread is serving a request now

    @contextmanager
    def serving(self):
        """Around one request."""
        self._enter()
        try:
            yield
        finally:
            self._leave()

    @contextmanager
    def exclusive(self):
        """A turn alone: no request runs until it ends."""
        with self._changed:
            self._waiting_turns += 1
            try:
                self._changed.wait_for(lambda: not self._exclusive and self._serving == 0)
            finally:
                self._waiting_turns -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._changed:
                self._exclusive = False
                self._changed.notify_all()

    @contextmanager
    def stepped_out(self):
        """Around a request's wait for something that only another request brings (a long poll)."""
        inside = getattr(self._inside, "serving", False)
        if inside:
            self._leave()
        try:
            yield
        finally:
            if inside:
                self._enter()

    def _enter(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: not self._exclusive and self._waiting_turns == 0)
            self._serving += 1
        self._inside.serving = True

    def _leave(self) -> None:
        self._inside.serving = False
        with self._changed:
            self._serving -= 1
            self._changed.notify_all()


class EndpointState:
    """Saves moto's contents to a folder and loads them back; thread-safe."""

    def __init__(self, directory: Path, account_id: str = DEFAULT_ACCOUNT_ID, gate: RequestGate | None = None,
                 refused: str = ""):
        """refused: why this moto's state is not read at all (another version than the tested ones); "" to read it."""
        self.directory = Path(directory)
        self._account = account_id
        self._refused = refused
        self.gate = gate or RequestGate()
        self._lock = threading.Lock()  # one save or restore at a time
        # Nothing is saved before the saved state was loaded (or found absent): a fresh endpoint
        # must not overwrite the snapshot it is about to restore.
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def readable(self) -> bool:
        """False when moto's state is not read at all (refused)."""
        return not self._refused

    def save(self) -> dict:
        """Write a snapshot; returns its figures. Refused (saved: False) until restore() has run."""
        with self._lock:
            if self._refused:
                return {"saved": False, "reason": self._refused}
            if not self._loaded:
                log.error("refused to save the local AWS endpoint's state: the saved state has not been restored "
                          "yet (the stack restores it after provisioning); what changes now is not kept")
                return {"saved": False, "reason": "the saved state has not been restored yet"}
            started = time.perf_counter()
            blobs = self.directory / BLOB_DIR
            private_dir(self.directory)
            private_dir(blobs)
            on_disk = {entry.name for entry in os.scandir(blobs)}  # only a save removes blobs, and saves take turns
            with self.gate.exclusive():
                copied_at = time.perf_counter()
                state = {"format": FORMAT, "saved_at": time.time(), "queues": self._capture_queues(),
                         "tables": self._capture_tables(), "objects": self._capture_objects(on_disk)}
                blocked_s = time.perf_counter() - copied_at
            _write_blobs(blobs, state)
            _write_atomically(self.directory / STATE_FILE, json.dumps(state, separators=(",", ":")).encode())
            removed = _remove_unreferenced(blobs, _referenced_blobs(state))
            return {"saved": True, "seconds": round(time.perf_counter() - started, 3),
                    "requests_held_s": round(blocked_s, 3), **_counts(state), "blobs_removed": removed}

    def restore(self) -> dict:
        """Load the snapshot into the resources that exist now; never raises for a bad snapshot.

        Existing messages, items and objects win over saved ones; no request is served meanwhile.
        A snapshot that cannot be read, or whose loading fails part-way, is moved aside and the
        endpoint carries on with what it holds, saying so.
        """
        with self._lock:
            if self._refused:
                return {"restored": False, "reason": self._refused}
            started = time.perf_counter()
            try:
                state = self._read()
                if state is None:
                    self._loaded = True
                    return {"restored": False, "reason": "no saved state"}
                with self.gate.exclusive():
                    figures = {"objects": self._restore_objects(state["objects"]),
                               "tables": self._restore_tables(state["tables"]),
                               "queues": self._restore_queues(state["queues"])}
            except Exception as exc:  # noqa: BLE001 - any snapshot that cannot be loaded is set aside, never fatal
                return self._set_aside(exc)
            self._loaded = True
            return {"restored": True, "seconds": round(time.perf_counter() - started, 3),
                    "saved_at": state.get("saved_at"), **figures}

    def save_every(self, interval_s: float, stop: threading.Event) -> threading.Thread:
        """Save every interval_s seconds on a daemon thread until stop is set."""
        def loop():
            while not stop.wait(interval_s):
                try:
                    self.save()
                except Exception:  # noqa: BLE001 - a failed save must not end the saving; the next one retries
                    log.exception("saving the local AWS endpoint's state failed; trying again in %.0f s", interval_s)
        thread = threading.Thread(target=loop, name="state-saver", daemon=True)
        thread.start()
        return thread

    # -- capture -----------------------------------------------------------------------------

    # -- capture: in the gate's exclusive turn, copies of values only ---------------------------

    def _capture_queues(self) -> list[dict]:
        return [{"region": region, "name": name, "messages": [_message_record(m) for m in queue._messages]}
                for region, backend in sqs_backends[self._account].items()
                for name, queue in backend.queues.items()]

    def _capture_tables(self) -> list[dict]:
        return [{"region": region, "name": name, "items": [item.to_json()["Attributes"] for item in _table_items(table)]}
                for region, backend in dynamodb_backends[self._account].items()
                for name, table in backend.tables.items()]

    def _capture_objects(self, on_disk: set[str]) -> list[dict]:
        return [_object_record(partition, bucket_name, key_name, versions[-1], on_disk)
                for partition, backend in s3_backends[self._account].items()
                for bucket_name, bucket in backend.buckets.items()
                for key_name, versions in dict.items(bucket.keys) if versions]

    # -- restore -----------------------------------------------------------------------------

    def _read(self) -> dict | None:
        """The saved state, checked whole before anything is loaded; None when there is none."""
        path = self.directory / STATE_FILE
        if not path.exists():
            return None
        size = path.stat().st_size
        if size > MAX_STATE_BYTES:
            raise UnreadableState(f"{path} holds {size / 2**20:.0f} MiB, over {MAX_STATE_BYTES / 2**20:.0f} MiB")
        blob_bytes = _folder_bytes(self.directory / BLOB_DIR)
        if blob_bytes > MAX_BLOB_BYTES:
            raise UnreadableState(f"its objects take {blob_bytes / 2**30:.1f} GiB, over "
                                  f"{MAX_BLOB_BYTES / 2**30:.0f} GiB")
        try:
            state = json.loads(path.read_bytes())
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                raise UnreadableState(f"{path} is not a format-{FORMAT} snapshot")
            missing = [name for name in _referenced_blobs(state) if not (self.directory / BLOB_DIR / name).is_file()]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UnreadableState(f"{path}: {type(exc).__name__}: {exc}") from exc
        if missing:
            raise UnreadableState(f"{len(missing)} blobs it refers to are missing (first: {missing[0]})")
        return state

    def _set_aside(self, exc: Exception) -> dict:
        reason = str(exc) if isinstance(exc, UnreadableState) else f"loading it failed: {type(exc).__name__}: {exc}"
        kept = self._move_aside()
        log.error("the saved state of the local AWS endpoint cannot be loaded (%s); carrying on without it. "
                  "The old copy is kept at %s", reason, kept)
        self._loaded = True
        return {"restored": False, "reason": reason, "kept_at": str(kept)}

    def _move_aside(self) -> Path:
        kept = self.directory.with_name(f"{self.directory.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(self.directory), str(kept))
        return kept

    def _restore_queues(self, queues: list[dict]) -> dict:
        counts = {"restored": 0, "kept": 0, "skipped_queues": 0}
        for saved in queues:
            queue = sqs_backends[self._account][saved["region"]].queues.get(saved["name"])
            if queue is None:
                counts["skipped_queues"] += 1
                continue
            present = {m.id for m in queue._messages}
            for record in saved["messages"]:
                if record["id"] in present:
                    counts["kept"] += 1
                    continue
                queue.add_message(self._message(record))
                counts["restored"] += 1
        return counts

    def _message(self, record: dict) -> Message:
        body = record.get("body")
        if body is None:
            body = (self.directory / BLOB_DIR / record["body_blob"]).read_text("utf-8")
        message = Message(record["id"], body, record.get("system_attributes"))
        for name in _MESSAGE_FIELDS:
            setattr(message, name, record[name])
        return message

    def _restore_tables(self, tables: list[dict]) -> dict:
        counts = {"restored": 0, "kept": 0, "skipped_tables": 0}
        for saved in tables:
            table = dynamodb_backends[self._account][saved["region"]].tables.get(saved["name"])
            if table is None:
                counts["skipped_tables"] += 1
                continue
            present = {_item_key(table, item.to_json()["Attributes"]) for item in _table_items(table)}
            for attributes in saved["items"]:
                if _item_key(table, attributes) in present:
                    counts["kept"] += 1
                    continue
                table.put_item(attributes)
                counts["restored"] += 1
        return counts

    def _restore_objects(self, objects: list[dict]) -> dict:
        counts = {"restored": 0, "kept": 0, "skipped_buckets": 0}
        for record in objects:
            backend = s3_backends[self._account][record["partition"]]
            bucket = backend.buckets.get(record["bucket"])
            if bucket is None:
                counts["skipped_buckets"] += 1
                continue
            if record["key"] in bucket.keys:
                counts["kept"] += 1
                continue
            value = (self.directory / BLOB_DIR / record["blob"]).read_bytes()
            key = backend.put_object(record["bucket"], record["key"], value, disable_notification=True)
            key.set_metadata(record["metadata"])
            counts["restored"] += 1
        return counts


def _table_items(table) -> list:
    """Every item of a moto table."""
    items = []
    for entry in table.items.values():
        items.extend(entry.values() if table.range_key_attr else [entry])
    return items


def _item_key(table, attributes: dict) -> str:
    """A table item's primary key as a comparable string."""
    key_names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return json.dumps([attributes.get(name) for name in key_names], sort_keys=True)


def _message_record(message: Message) -> dict:
    # Copies: a receive changes the message's handle and counts in place after the turn.
    return {"id": message.id, "body": message.body, "system_attributes": copy.deepcopy(message.system_attributes),
            **{name: copy.deepcopy(getattr(message, name)) for name in _MESSAGE_FIELDS}}


def _object_record(partition: str, bucket: str, name: str, key, on_disk: set[str]) -> dict:
    # An object's etag is its content's md5 (or, multipart, the md5 of its parts): a blob
    # already written under that name holds these bytes and is not read or written again.
    # moto keeps an object's bytes in memory (spilled to a temporary file past a few MiB).
    blob = "s3-" + key.etag.strip('"')
    record = {"partition": partition, "bucket": bucket, "key": name, "blob": blob, "metadata": dict(key.metadata)}
    if blob not in on_disk:
        record["value"] = key.value
    return record


def _write_blobs(blobs: Path, state: dict) -> None:
    """Write the bytes copied in the turn as blobs, leaving in state.json only their names."""
    for record in state["objects"]:
        value = record.pop("value", None)
        if value is not None:
            _write_blob(blobs, record["blob"], value)
    for queue in state["queues"]:
        for record in queue["messages"]:
            encoded = record["body"].encode("utf-8")
            if len(encoded) > INLINE_BODY_BYTES:
                del record["body"]
                record["body_blob"] = _write_blob(blobs, "sqs-" + hashlib.sha256(encoded).hexdigest(), encoded)


def _write_blob(blobs: Path, name: str, content: bytes) -> str:
    path = blobs / name
    if not path.exists():
        _write_atomically(path, content)
    return name


def _write_atomically(path: Path, data: bytes) -> None:
    write_private(path, data)   # mode 0600: the snapshot holds every photo and password hash


def _referenced_blobs(state: dict) -> set[str]:
    names = {record["blob"] for record in state["objects"]}
    names.update(m["body_blob"] for q in state["queues"] for m in q["messages"] if "body_blob" in m)
    return names


def _remove_unreferenced(blobs: Path, referenced: set[str]) -> int:
    """Delete blobs (and temporary files of a crashed save) that the new snapshot no longer names."""
    removed = 0
    for entry in os.scandir(blobs):
        if entry.name not in referenced:
            try:
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def _folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())


def _counts(state: dict) -> dict:
    return {"messages": sum(len(q["messages"]) for q in state["queues"]),
            "items": sum(len(t["items"]) for t in state["tables"]), "objects": len(state["objects"])}
