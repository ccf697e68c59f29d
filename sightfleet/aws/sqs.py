"""SQS: the request, response and dead-letter queues."""
from __future__ import annotations

import json
import logging

from sightfleet.aws.session import LONG_POLL_MAX_WAIT_S, client, translated
from sightfleet.config import Settings
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import Message

log = logging.getLogger(__name__)
_MAX_VISIBILITY_S = 43200
RETENTION_S = 4 * 86400                # request and response queues: 4 days, SQS's default
DEAD_LETTER_RETENTION_S = 14 * 86400   # dead letters are kept for inspection as long as SQS allows
_RECEIVE_COUNT = "ApproximateReceiveCount"


def message_from(raw: dict) -> Message:
    """One message of a ReceiveMessage reply; a missing or unreadable receive count counts as 1."""
    return Message(raw["MessageId"], raw["ReceiptHandle"], raw["Body"], _receive_count(raw))


def _receive_count(raw: dict) -> int:
    value = raw.get("Attributes", {}).get(_RECEIVE_COUNT)
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        if value is not None:   # absent only when not asked for; anything else is worth a line
            log.warning("message %s has an unreadable %s %r; counting 1", raw.get("MessageId"), _RECEIVE_COUNT, value)
        return 1


class Queue:
    """One SQS queue, addressed by name; the URL is looked up once."""

    def __init__(self, settings: Settings, name: str):
        self.name = name
        self._sqs = client(settings, "sqs")
        self._receiver = client(settings, "sqs", long_poll=True)
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            with translated(f"queue {self.name}"):
                self._url = self._sqs.get_queue_url(QueueName=self.name)["QueueUrl"]
        return self._url

    def send(self, body: str, delay_s: int = 0) -> str:
        """Send one message, visible after delay_s (at most 900); returns its message id."""
        with translated(f"send to {self.name}"):
            return self._sqs.send_message(QueueUrl=self.url, MessageBody=body, DelaySeconds=delay_s)["MessageId"]

    def receive(self, max_messages: int = 10, wait_s: int = 20, visibility_s: int | None = None) -> list[Message]:
        """Long-poll for up to max_messages messages, waiting at most LONG_POLL_MAX_WAIT_S."""
        extra = {} if visibility_s is None else {"VisibilityTimeout": visibility_s}
        # The receiving client's read timeout is sized for SQS's longest wait, and no longer.
        wait_s = max(0, min(wait_s, LONG_POLL_MAX_WAIT_S))
        with translated(f"receive from {self.name}"):
            reply = self._receiver.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_s,
                MessageSystemAttributeNames=[_RECEIVE_COUNT], **extra,
            )
        return [message_from(raw) for raw in reply.get("Messages", [])]

    def send_batch(self, bodies: list[str]) -> list[int]:
        """Send messages ten per call; returns the positions of those not sent."""
        return self._in_tens("send_message_batch", [{"MessageBody": b} for b in bodies])

    def delete_batch(self, receipts: list[str]) -> list[str]:
        """Delete messages ten per call; returns the receipts not deleted."""
        failed = self._in_tens("delete_message_batch", [{"ReceiptHandle": r} for r in receipts])
        return [receipts[i] for i in failed]

    def set_visibility(self, receipts: list[str], seconds: int) -> list[str]:
        """Extend (or with 0, give back) the messages' visibility; returns the receipts not changed."""
        seconds = max(0, min(seconds, _MAX_VISIBILITY_S))
        entries = [{"ReceiptHandle": r, "VisibilityTimeout": seconds} for r in receipts]
        return [receipts[i] for i in self._in_tens("change_message_visibility_batch", entries)]

    def delete(self, receipt: str) -> None:
        """Delete one message; Invalid when its receipt is malformed or no longer valid."""
        with translated(f"delete from {self.name}"):
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)

    def _in_tens(self, operation: str, entries: list[dict]) -> list[int]:
        """Call a batch operation ten entries at a time; returns the positions of entries that failed.

        Each entry's fate is its own: a call that fails as a whole fails its ten entries, not the rest.
        """
        failed: list[int] = []
        url = self.url
        for start in range(0, len(entries), 10):
            batch = [{"Id": str(start + i), **entry} for i, entry in enumerate(entries[start:start + 10])]
            try:
                with translated(f"{operation} on {self.name}"):
                    reply = getattr(self._sqs, operation)(QueueUrl=url, Entries=batch)
            except SightfleetError as exc:   # a missing queue was found out above, by its URL
                log.warning("%s on %s: %s entries failed: %s", operation, self.name, len(batch), exc)
                failed.extend(range(start, start + len(batch)))
                continue
            for failure in reply.get("Failed", []):
                log.warning("%s on %s: an entry failed: %s: %s", operation, self.name, failure.get("Code"),
                            failure.get("Message"))
                failed.append(int(failure["Id"]))
        return sorted(failed)

    def counts(self) -> dict[str, int]:
        """Approximate visible, in-flight and delayed message counts."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        attrs = self._attributes(names)
        return {
            "visible": int(attrs.get(names[0], 0)),
            "in_flight": int(attrs.get(names[1], 0)),
            "delayed": int(attrs.get(names[2], 0)),
        }

    def max_message_bytes(self) -> int:
        """The queue's MaximumMessageSize, read rather than assumed."""
        return int(self._attributes(["MaximumMessageSize"]).get("MaximumMessageSize", 262144))

    def _attributes(self, names: list[str]) -> dict:
        with translated(f"attributes of {self.name}"):
            return self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)["Attributes"]


def ensure_queues(settings: Settings) -> None:
    """Create the request queue with its dead-letter queue and the response queue (idempotent)."""
    names = settings.names
    sqs = client(settings, "sqs")
    with translated("create queues"):
        dlq_url = sqs.create_queue(
            QueueName=names.dead_letter_queue, Attributes={"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_S)}
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.max_receive_count)})
        request_attrs = {
            "VisibilityTimeout": str(settings.visibility_timeout_s),
            "ReceiveMessageWaitTimeSeconds": str(settings.receive_wait_s),
            "MessageRetentionPeriod": str(RETENTION_S),
            "RedrivePolicy": redrive,
        }
        url = sqs.create_queue(QueueName=names.request_queue)["QueueUrl"]
        # create_queue refuses changed attributes on an existing queue; set them explicitly instead.
        sqs.set_queue_attributes(QueueUrl=url, Attributes=request_attrs)
        sqs.create_queue(QueueName=names.response_queue, Attributes={"MessageRetentionPeriod": str(RETENTION_S)})
        # Webhook deliveries retry for about 32 hours: the four days' retention keeps them all.
        hooks = sqs.create_queue(QueueName=names.webhook_queue)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=hooks, Attributes={
            "MessageRetentionPeriod": str(RETENTION_S), "VisibilityTimeout": str(settings.webhook_visibility_s)})
