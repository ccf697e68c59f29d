"""What the local AWS endpoint holds, kept on disk: S3 objects, DynamoDB items, SQS messages.

Inside the emulator process (sightfleet/emulator.py), `EndpointState` writes a snapshot of
moto's contents every few seconds and when asked (the supervisor asks before it stops the
endpoint), and loads it back into the queues, buckets and tables that provisioning created.
It is a snapshot of the state, not moto's recording of requests: a replayed request log
would hand out new receipt handles, message ids and instance ids, so every replayed delete,
visibility change and termination would miss (see README, "What a restart keeps").

On disk, under one folder: `state.json` (queues with their messages, tables with their items,
the object index) and `blobs/` (object bytes and large message bodies, each written once under
its content's name). Each snapshot is written to a temporary file and renamed, so a crash of the
endpoint mid-save leaves the previous snapshot whole.

Consistency without stopping the endpoint: the queues are read first, then the tables, then the
buckets. The stack writes in the opposite order (objects, then the result row, then it deletes
the message; the web tier writes the row before sending the message), so a message missing from
a snapshot had its result row and objects written before that snapshot read them.

Not kept: EC2 instances (their worker processes end with the stack) and CloudWatch metrics.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.s3.models import s3_backends
from moto.sqs.models import Message, sqs_backends

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
# Copying moto's dicts races with requests that change them; a copy that raced is retried.
_COPY_ATTEMPTS = 5
_MESSAGE_FIELDS = ("message_attributes", "receipt_handle", "_old_receipt_handles", "sender_id", "sent_timestamp",
                   "approximate_first_receive_timestamp", "approximate_receive_count", "deduplication_id",
                   "group_id", "sequence_number", "visible_at", "delayed_until")


class UnreadableState(Exception):
    """The saved state cannot be loaded as it is (corrupt, from another format, too large)."""


class EndpointState:
    """Saves moto's contents to a folder and loads them back; thread-safe."""

    def __init__(self, directory: Path, account_id: str = DEFAULT_ACCOUNT_ID):
        self.directory = Path(directory)
        self._account = account_id
        self._lock = threading.Lock()
        # Nothing is saved before the saved state was loaded (or found absent): a fresh endpoint
        # must not overwrite the snapshot it is about to restore.
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def save(self) -> dict:
        """Write a snapshot; returns its figures. Refused (saved: False) until restore() has run."""
        with self._lock:
            if not self._loaded:
                return {"saved": False, "reason": "the saved state has not been restored yet"}
            started = time.perf_counter()
            blobs = self.directory / BLOB_DIR
            blobs.mkdir(parents=True, exist_ok=True)
            state = {"format": FORMAT, "saved_at": time.time(), "queues": self._capture_queues(blobs),
                     "tables": self._capture_tables(), "objects": self._capture_objects(blobs)}
            _write_atomically(self.directory / STATE_FILE, json.dumps(state, separators=(",", ":")).encode())
            removed = _remove_unreferenced(blobs, _referenced_blobs(state))
            return {"saved": True, "seconds": round(time.perf_counter() - started, 3), **_counts(state),
                    "blobs_removed": removed}

    def restore(self) -> dict:
        """Load the snapshot into the resources that exist now; never raises for a bad snapshot.

        Existing messages, items and objects win over saved ones. A snapshot that cannot be read is
        moved aside and the endpoint starts fresh, saying so.
        """
        with self._lock:
            started = time.perf_counter()
            try:
                state = self._read()
            except UnreadableState as exc:
                kept = self._move_aside()
                log.error("the saved state of the local AWS endpoint cannot be loaded (%s); starting fresh. "
                          "The old copy is kept at %s", exc, kept)
                self._loaded = True
                return {"restored": False, "reason": str(exc), "kept_at": str(kept)}
            self._loaded = True
            if state is None:
                return {"restored": False, "reason": "no saved state"}
            figures = {"queues": self._restore_queues(state["queues"]), "tables": self._restore_tables(state["tables"]),
                       "objects": self._restore_objects(state["objects"])}
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

    def _capture_queues(self, blobs: Path) -> list[dict]:
        captured = []
        for region, backend in _copied(lambda: list(sqs_backends[self._account].items())):
            for name, queue in _copied(lambda: list(backend.queues.items())):
                with queue._messages_lock:
                    messages = list(queue._messages)
                captured.append({"region": region, "name": name,
                                 "messages": [_message_record(m, blobs) for m in messages]})
        return captured

    def _capture_tables(self) -> list[dict]:
        captured = []
        for region, backend in _copied(lambda: list(dynamodb_backends[self._account].items())):
            for name, table in _copied(lambda: list(backend.tables.items())):
                items = _copied(lambda: _table_items(table))
                captured.append({"region": region, "name": name,
                                 "items": [item.to_json()["Attributes"] for item in items]})
        return captured

    def _capture_objects(self, blobs: Path) -> list[dict]:
        captured = []
        for partition, backend in _copied(lambda: list(s3_backends[self._account].items())):
            for bucket_name, bucket in _copied(lambda: list(backend.buckets.items())):
                for key_name, versions in _copied(lambda: list(dict.items(bucket.keys))):
                    if versions:
                        captured.append(_object_record(partition, bucket_name, key_name, versions[-1], blobs))
        return captured

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


def _copied(read):
    """read(), retried while a concurrent request changes the dict it copies."""
    for attempt in range(_COPY_ATTEMPTS):
        try:
            return read()
        except RuntimeError:  # "dictionary changed size during iteration"
            if attempt == _COPY_ATTEMPTS - 1:
                raise
    return read()


def _table_items(table) -> list:
    """Every item of a moto table, from copies of its dicts."""
    items = []
    for entry in list(table.items.values()):
        items.extend(list(entry.values()) if table.range_key_attr else [entry])
    return items


def _item_key(table, attributes: dict) -> str:
    """A table item's primary key as a comparable string."""
    key_names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return json.dumps([attributes.get(name) for name in key_names], sort_keys=True)


def _message_record(message: Message, blobs: Path) -> dict:
    record = {"id": message.id, "system_attributes": message.system_attributes,
              **{name: getattr(message, name) for name in _MESSAGE_FIELDS}}
    encoded = message.body.encode("utf-8")
    if len(encoded) <= INLINE_BODY_BYTES:
        record["body"] = message.body
    else:
        record["body_blob"] = _write_blob(blobs, "sqs-" + hashlib.sha256(encoded).hexdigest(), lambda: encoded)
    return record


def _object_record(partition: str, bucket: str, name: str, key, blobs: Path) -> dict:
    # An object's etag is its content's md5 (or, multipart, the md5 of its parts): a blob
    # already written under that name holds these bytes and is not read or written again.
    blob = "s3-" + key.etag.strip('"')
    _write_blob(blobs, blob, lambda: key.value)
    return {"partition": partition, "bucket": bucket, "key": name, "blob": blob, "metadata": dict(key.metadata)}


def _write_blob(blobs: Path, name: str, content) -> str:
    path = blobs / name
    if not path.exists():
        _write_atomically(path, content())
    return name


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


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
