"""DynamoDB: Rekognition calls in flight, by owner and photo, so that an SDK's retry joins the job already sent.

Items in the accounts table (`call#<owner>#<sha256 of the photo>`: the image id), each with a TTL: a retry
landing on any web process of any instance finds the job its first try sent, while the call may still be
retried (PENDING_TTL_S).
"""
from __future__ import annotations

import time

from sightfleet.aws.accounts import TTL_ATTRIBUTE, _pk
from sightfleet.aws.session import resource, translated
from sightfleet.config import Settings

CALL = "call"


class PendingCalls:
    """Which job a (owner, photo) call sent, for as long as a retry may come."""

    def __init__(self, settings: Settings, ttl_s: int):
        self._table = resource(settings, "dynamodb").Table(settings.names.accounts_table)
        self._ttl_s = ttl_s

    def job_of(self, owner: str, digest: str) -> str | None:
        """The image id of the call's job, while it is pending; None when there is none."""
        with translated(f"look up the pending call of {owner}"):
            item = self._table.get_item(Key={"pk": _pk(CALL, f"{owner}#{digest}")}, ConsistentRead=True).get("Item")
        if item is None or int(item[TTL_ATTRIBUTE]) < time.time():   # DynamoDB's TTL removes it later
            return None
        return str(item["image_id"])

    def sent(self, owner: str, digest: str, image_id: str) -> None:
        """Remember the job a call sent."""
        with translated(f"remember the pending call of {owner}"):
            self._table.put_item(Item={"pk": _pk(CALL, f"{owner}#{digest}"), "kind": CALL, "image_id": image_id,
                                       TTL_ATTRIBUTE: int(time.time() + self._ttl_s)})

    def done(self, owner: str, digest: str) -> None:
        """The call was answered: a later call with the same photo is a new one."""
        with translated(f"forget the pending call of {owner}"):
            self._table.delete_item(Key={"pk": _pk(CALL, f"{owner}#{digest}")})
