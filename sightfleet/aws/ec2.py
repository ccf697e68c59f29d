"""EC2: the worker fleet, found by its tags so a restarted controller carries on."""
from __future__ import annotations

import requests

from sightfleet.aws.session import client, translated
from sightfleet.config import Settings
from sightfleet.interfaces import ALL_STATES, LIVE_STATES, Instance  # noqa: F401 - re-exported

WORKER_ROLE = "worker"


class Fleet:
    """The stack's worker instances: launch, list and terminate through the EC2 API."""

    def __init__(self, settings: Settings, role: str = WORKER_ROLE):
        self._settings = settings
        self._role = role
        self._ec2 = client(settings, "ec2")

    def _tag_filters(self) -> list[dict]:
        names = self._settings.names
        return [
            {"Name": f"tag:{names.stack_tag}", "Values": [names.prefix]},
            {"Name": f"tag:{names.role_tag}", "Values": [self._role]},
        ]

    def instances(self, states: tuple[str, ...] = LIVE_STATES) -> list[Instance]:
        """The stack's instances of this role in the given states, oldest first."""
        filters = self._tag_filters() + [{"Name": "instance-state-name", "Values": list(states)}]
        found = []
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
        return [raw["InstanceId"] for raw in reply["Instances"]]

    def terminate(self, instance_ids: list[str]) -> None:
        if not instance_ids:
            return
        with translated(f"terminate {instance_ids}"):
            self._ec2.terminate_instances(InstanceIds=list(instance_ids))


def _instance(raw: dict) -> Instance:
    return Instance(
        id=raw["InstanceId"],
        state=raw["State"]["Name"],
        launched_at=raw["LaunchTime"],
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
    )


def instance_id_from_metadata(timeout_s: float = 2.0) -> str | None:
    """This instance's id from the EC2 instance metadata service (IMDSv2), None off EC2."""
    base = "http://169.254.169.254/latest"
    try:
        token = requests.put(f"{base}/api/token", timeout=timeout_s,
                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}).text
        reply = requests.get(f"{base}/meta-data/instance-id", timeout=timeout_s,
                             headers={"X-aws-ec2-metadata-token": token})
        return reply.text.strip() if reply.ok else None
    except requests.RequestException:
        return None
