"""EC2: the worker fleet, found by its tags so a restarted controller carries on.

Workers in the warm pool are stopped instances, hibernated where the instance allows it. Two
tags say when each last went to the pool and came back (EC2 keeps only the first launch time
locally, and DescribeInstances may list a started instance as stopped for a moment).

A Fleet may be given `on_change`, called after each launch, start, stop or terminate: on a local
endpoint it nudges the local EC2 host (sightfleet/fleet_nudge.py, wired by Resources.connect).
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from botocore.exceptions import ClientError

from sightfleet.aws.session import client, error_code, translated
from sightfleet.config import Settings
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import ALL_STATES, LIVE_STATES, POOLED_STATES, Instance  # noqa: F401 - re-exported

log = logging.getLogger(__name__)
WORKER_ROLE = "worker"
POOLED_AT_TAG = "sightfleet:pooled-at"
STARTED_AT_TAG = "sightfleet:started-at"
# What StopInstances answers when it cannot hibernate this instance: hibernation not enabled at
# launch, an unencrypted or too small root volume, an instance type or AMI without support, an
# agent not ready yet (the first minutes after launch). A plain stop may still work.
HIBERNATION_REFUSED = {"UnsupportedHibernationConfiguration", "UnsupportedOperation",
                       "InvalidParameterCombination", "IncorrectInstanceState"}


class Fleet:
    """The stack's worker instances: launch, list and terminate through the EC2 API."""

    def __init__(self, settings: Settings, role: str = WORKER_ROLE, on_change: Callable[[], object] | None = None):
        self._settings = settings
        self._role = role
        self._client = None
        self._client_lock = threading.Lock()
        self._on_change = on_change

    @property
    def _ec2(self):
        """The EC2 client, made at first use: its service model costs a worker's start-up 80 ms of CPU,
        and a worker first needs it only once idle."""
        with self._client_lock:
            if self._client is None:
                self._client = client(self._settings, "ec2")
            return self._client

    def _tag_filters(self) -> list[dict]:
        names = self._settings.names
        return [
            {"Name": f"tag:{names.stack_tag}", "Values": [names.prefix]},
            {"Name": f"tag:{names.role_tag}", "Values": [self._role]},
        ]

    def instances(self, states: tuple[str, ...] = LIVE_STATES) -> list[Instance]:
        """The stack's instances of this role in the given states, oldest first."""
        filters = self._tag_filters() + [{"Name": "instance-state-name", "Values": list(states)}]
        found: list[Instance] = []
        with translated("describe instances"):
            for page in self._ec2.get_paginator("describe_instances").paginate(Filters=filters):
                for reservation in page["Reservations"]:
                    found.extend(_instance(raw) for raw in reservation["Instances"])
        return sorted(found, key=lambda i: (i.launched_at, i.id))

    def launch(self, count: int, user_data: str) -> list[str]:
        """Start count workers tagged with the stack and role; returns their ids."""
        names = self._settings.names
        tags = [{"Key": names.stack_tag, "Value": names.prefix}, {"Key": names.role_tag, "Value": self._role},
                {"Key": "Name", "Value": f"{names.prefix}-{self._role}"}]
        params = {
            "MinCount": count, "MaxCount": count,
            # botocore base64-encodes UserData for RunInstances itself; encoding here too would
            # hand cloud-init base64 text instead of the script.
            "UserData": user_data,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
            "InstanceInitiatedShutdownBehavior": "terminate",
        }
        if self._settings.launch_template:
            params["LaunchTemplate"] = {"LaunchTemplateName": self._settings.launch_template}
        else:
            params.update(ImageId=self._settings.image_id, InstanceType=self._settings.instance_type)
        if self._settings.instance_profile:
            params["IamInstanceProfile"] = {"Name": self._settings.instance_profile}
        with translated("run instances"):
            reply = self._ec2.run_instances(**params)
        self._changed()
        return [raw["InstanceId"] for raw in reply["Instances"]]

    def terminate(self, instance_ids: list[str]) -> None:
        if not instance_ids:
            return
        with translated(f"terminate {instance_ids}"):
            self._ec2.terminate_instances(InstanceIds=list(instance_ids))
        self._changed()

    def start(self, instance_ids: list[str]) -> None:
        """StartInstances, then the start time as a tag: a failed tag is logged, the start stands."""
        if not instance_ids:
            return
        with translated(f"start {instance_ids}"):
            self._ec2.start_instances(InstanceIds=list(instance_ids))
        try:
            self._tag(instance_ids, STARTED_AT_TAG)
        except SightfleetError as exc:
            log.warning("started %s but could not record when (%s); their launch time stands for it",
                        instance_ids, exc)
        # After the tag: a resumed worker reads it to see that it was started, and looks again only a second later.
        self._changed()

    def stop(self, instance_ids: list[str], hibernate: bool = True) -> bool:
        """Tag the time, then StopInstances (Hibernate=True first); True if hibernating, False: plain stop."""
        if not instance_ids:
            return hibernate
        self._tag(instance_ids, POOLED_AT_TAG)
        if hibernate:
            try:
                self._ec2.stop_instances(InstanceIds=list(instance_ids), Hibernate=True)
                self._changed()
                return True
            except ClientError as exc:
                if error_code(exc) not in HIBERNATION_REFUSED:
                    with translated(f"hibernate {instance_ids}"):
                        raise
                log.warning("cannot hibernate %s (%s: %s); stopping them plainly: they boot again when "
                            "started, from a warm volume, but reload their models", instance_ids,
                            error_code(exc), exc.response.get("Error", {}).get("Message", ""))
        with translated(f"stop {instance_ids}"):
            self._ec2.stop_instances(InstanceIds=list(instance_ids))
        self._changed()
        return False

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _tag(self, instance_ids: list[str], key: str) -> None:
        with translated(f"tag {instance_ids} {key}"):
            self._ec2.create_tags(Resources=list(instance_ids), Tags=[{"Key": key, "Value": f"{time.time():.3f}"}])


def _instance(raw: dict) -> Instance:
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    return Instance(
        id=raw["InstanceId"],
        state=raw["State"]["Name"],
        launched_at=raw["LaunchTime"],
        tags=tags,
        started_at=_tag_time(tags.get(STARTED_AT_TAG)),
        pooled_at=_tag_time(tags.get(POOLED_AT_TAG)),
    )


def _tag_time(value: str | None) -> datetime | None:
    """A time tag (epoch seconds) as a datetime; None when absent or unreadable."""
    try:
        return datetime.fromtimestamp(float(value), timezone.utc) if value else None
    except ValueError:
        return None


def instance_id_from_metadata(timeout_s: float = 2.0) -> str | None:
    """This instance's id from the EC2 instance metadata service (IMDSv2), None off EC2."""
    import requests   # here, not at the top: a local worker never asks, and the import costs its start-up 40 ms
    base = "http://169.254.169.254/latest"
    try:
        token = requests.put(f"{base}/api/token", timeout=timeout_s,
                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}).text
        reply = requests.get(f"{base}/meta-data/instance-id", timeout=timeout_s,
                             headers={"X-aws-ec2-metadata-token": token})
        return reply.text.strip() if reply.ok else None
    except requests.RequestException:
        return None
