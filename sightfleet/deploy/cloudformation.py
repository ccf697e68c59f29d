"""Create, update and delete a stack with CloudFormation, following its events, and check what it made."""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Callable

from botocore.exceptions import ClientError

from sightfleet.aws.ec2 import Fleet
from sightfleet.aws.s3 import Bucket, ensure_bucket
from sightfleet.aws.session import client, translated
from sightfleet.config import Settings
from sightfleet.deploy.bundle import build_bundle, bundle_key
from sightfleet.deploy.template import (CONTROLLER_GROUP, MAX_TEMPLATE_BODY_BYTES, MAX_TEMPLATE_URL_BYTES, SERVICE_ROLES,
                                        DeployOptions, build_template, stack_settings, template_body)
from sightfleet.errors import NotFound, SightfleetError
from sightfleet.resources import Resources

log = logging.getLogger(__name__)
DONE_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE"}
# A stack in one of these cannot be updated: a failed first create leaves it, and it only can be deleted.
DELETE_FIRST = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED"}
NO_UPDATES = "No updates are to be performed"
# Instances in these states still hold their network interfaces (the stack's subnets and security groups).
NOT_GONE = ("pending", "running", "shutting-down", "stopping", "stopped")


class DeployError(SightfleetError):
    """The stack could not be made, changed or removed; the message says why."""


@dataclass
class Waiting:
    """How long to wait for the stack, and how often to look (fast at first, then every max_poll_s)."""

    timeout_s: float = 3600.0
    max_poll_s: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep)


def _exists(call: Callable[[], object]) -> bool:
    """True unless the call says the thing does not exist; other errors are raised as the project's errors."""
    try:
        with translated("look up"):
            call()
    except NotFound:
        return False
    except SightfleetError as exc:
        if "does not exist" in str(exc):   # CloudFormation says so in a ValidationError
            return False
        raise
    return True


class Stack:
    """One CloudFormation stack, by the name of its prefix."""

    def __init__(self, settings: Settings, waiting: Waiting | None = None):
        self.settings = settings
        self.name = settings.names.stack_name
        self.waiting = waiting or Waiting()
        self._cfn = client(settings, "cloudformation")

    def describe(self, stack_id: str | None = None) -> dict | None:
        """The stack (by id once known: a deleted stack is found only by id), None if there is none."""
        try:
            with translated(f"describe stack {self.name}"):
                return self._cfn.describe_stacks(StackName=stack_id or self.name)["Stacks"][0]
        except SightfleetError as exc:
            if "does not exist" in str(exc):
                return None
            raise

    def _events(self, stack_id: str) -> list[dict]:
        with translated(f"events of stack {self.name}"):
            pages = self._cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id)
            return [event for page in pages for event in page["StackEvents"]]

    def wait(self, stack_id: str, seen: set[str]) -> dict:
        """Log each new event until the stack settles; returns it as it then stands."""
        deadline, pause = time.monotonic() + self.waiting.timeout_s, 0.25
        while True:
            new = [e for e in reversed(self._events(stack_id)) if e["EventId"] not in seen]
            for event in new:
                seen.add(event["EventId"])
                log.info("%s %-20s %-40s %s%s", _clock(event["Timestamp"]), event["ResourceStatus"],
                         event["ResourceType"], event["LogicalResourceId"],
                         f": {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else "")
            stack = self.describe(stack_id)
            if stack is None or not stack["StackStatus"].endswith("_IN_PROGRESS"):
                return stack or {"StackStatus": "DELETE_COMPLETE", "StackId": stack_id}
            if time.monotonic() > deadline:
                raise DeployError(f"stack {self.name} still {stack['StackStatus']} after {self.waiting.timeout_s:.0f} s")
            pause = 0.25 if new else min(pause * 2, self.waiting.max_poll_s)
            self.waiting.sleep(pause)

    def settle(self, stack_id: str, seen: set[str], action: str) -> dict:
        """Wait, then raise DeployError with the failures' reasons unless the stack ended well."""
        stack = self.wait(stack_id, seen)
        if stack["StackStatus"] not in DONE_OK:
            reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
                       for e in self._events(stack_id) if e["ResourceStatus"].endswith("FAILED")]
            raise DeployError(f"{action} of stack {self.name} ended {stack['StackStatus']}"
                              + (": " + "; ".join(reversed(reasons)) if reasons else ""))
        return stack

    def unchanged(self, stack: dict, template: dict, parameters: list[dict]) -> bool:
        """True when the stack already runs this template with these parameter values."""
        with translated(f"template of stack {self.name}"):
            body = self._cfn.get_template(StackName=stack["StackId"])["TemplateBody"]
        current = json.loads(body) if isinstance(body, str) else body
        values = {p["ParameterKey"]: _parameter_text(p.get("ParameterValue", "")) for p in stack.get("Parameters", [])}
        return json.loads(json.dumps(current)) == template and all(
            values.get(p["ParameterKey"]) == p["ParameterValue"] for p in parameters)

    def apply(self, template: dict, parameters: list[dict]) -> str:
        """Create the stack or update it; returns what happened: created, updated or unchanged."""
        source = self._template_source(template_body(template))
        stack = self.describe()
        if stack and stack["StackStatus"].endswith("_IN_PROGRESS"):
            raise DeployError(f"stack {self.name} is busy ({stack['StackStatus']}); run again when it settles")
        if stack and stack["StackStatus"] in DELETE_FIRST:
            log.warning("stack %s is %s (a failed attempt): deleting it before creating it again",
                        self.name, stack["StackStatus"])
            self.delete(stack)
            stack = None
        if stack and self.unchanged(stack, template, parameters):
            return "unchanged"
        seen = {e["EventId"] for e in self._events(stack["StackId"])} if stack else set()
        common = {"StackName": self.name, **source, "Parameters": parameters,
                  "Capabilities": ["CAPABILITY_NAMED_IAM"],
                  "Tags": [{"Key": self.settings.names.stack_tag, "Value": self.settings.names.prefix}]}
        try:
            with translated(f"{'update' if stack else 'create'} stack {self.name}"):
                if stack:
                    stack_id = self._cfn.update_stack(**common)["StackId"]
                else:
                    stack_id = self._cfn.create_stack(**common)["StackId"]
        except SightfleetError as exc:
            if NO_UPDATES in str(exc):
                return "unchanged"
            raise
        log.info("%s stack %s (%s)", "updating" if stack else "creating", self.name, stack_id)
        self.settle(stack_id, seen, "update" if stack else "creation")
        return "updated" if stack else "created"

    def _template_source(self, body: str) -> dict:
        """TemplateBody inline while it fits CloudFormation's inline limit, else a TemplateURL in the artefacts
        bucket (named by the template's hash, so a second deploy of the same template writes nothing new)."""
        size = len(body.encode())
        if size <= MAX_TEMPLATE_BODY_BYTES:
            return {"TemplateBody": body}
        if size > MAX_TEMPLATE_URL_BYTES:
            raise DeployError(f"the template is {size} bytes, over CloudFormation's limit of {MAX_TEMPLATE_URL_BYTES}")
        bucket = self.settings.names.artefacts_bucket
        key = f"templates/{hashlib.sha256(body.encode()).hexdigest()}.json"
        ensure_bucket(self.settings, bucket)
        Bucket(self.settings, bucket).put(key, body.encode(), "application/json")
        log.info("the template (%d KiB) goes through s3://%s/%s, past the inline limit", size // 1024, bucket, key)
        return {"TemplateURL": f"https://s3.{self.settings.region}.amazonaws.com/{bucket}/{key}"}

    def delete(self, stack: dict) -> None:
        seen = {e["EventId"] for e in self._events(stack["StackId"])}
        with translated(f"delete stack {self.name}"):
            self._cfn.delete_stack(StackName=stack["StackId"])
        log.info("deleting stack %s", self.name)
        self.settle(stack["StackId"], seen, "deletion")

    def outputs(self) -> dict[str, str]:
        stack = self.describe()
        if stack is None:
            raise DeployError(f"stack {self.name} does not exist")
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def physical_id(self, logical_id: str) -> str | None:
        """The name of one of the stack's resources, None if it has none (yet, or any more)."""
        try:
            with translated(f"resource {logical_id} of stack {self.name}"):
                detail = self._cfn.describe_stack_resource(StackName=self.name, LogicalResourceId=logical_id)
        except SightfleetError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        return detail["StackResourceDetail"].get("PhysicalResourceId")


def _parameter_text(value: str) -> str:
    """A parameter's value as it was given (moto answers a list parameter with Python's repr of the list)."""
    if value.startswith("[") and value.endswith("]"):
        try:
            return ",".join(ast.literal_eval(value))
        except (ValueError, SyntaxError, TypeError):
            return value
    return value


def _clock(stamp) -> str:
    return stamp.strftime("%H:%M:%S") if isinstance(stamp, datetime) else str(stamp)


def upload_bundle(settings: Settings) -> str:
    """Put the code bundle in the artefacts bucket (made here, outside the stack); returns its s3:// URI."""
    names = settings.names
    data = build_bundle()
    key = bundle_key(data)
    ensure_bucket(settings, names.artefacts_bucket)   # refuses plain HTTP, as the stack's own buckets do
    Bucket(settings, names.artefacts_bucket).put(key, data, "application/gzip")
    log.info("code bundle s3://%s/%s (%d KiB)", names.artefacts_bucket, key, len(data) // 1024)
    return f"s3://{names.artefacts_bucket}/{key}"


def planned_template(settings: Settings, options: DeployOptions) -> dict:
    """The template scripts/deploy would apply, built without calling AWS."""
    bundle = "" if options.image_id else f"s3://{settings.names.artefacts_bucket}/{bundle_key(build_bundle())}"
    return build_template(stack_settings(settings, options, bundle))


def check_outputs(settings: Settings, outputs: dict[str, str]) -> list[str]:
    """What is wrong with the stack's outputs or its resources, through the project's own modules."""
    names = settings.names
    problems = []
    expected = {"InputBucket": names.input_bucket, "OutputBucket": names.output_bucket,
                "ResultsTable": names.results_table, "FleetTable": names.fleet_table,
                "WorkerLaunchTemplate": names.role_name("worker")}
    for key, want in expected.items():
        if outputs.get(key) != want:
            problems.append(f"output {key} is {outputs.get(key)!r}, expected {want!r}")
    resources = Resources.connect(settings)
    queues = {"RequestQueueUrl": resources.requests, "DeadLetterQueueUrl": resources.dead_letters,
              "ResponseQueueUrl": resources.responses}
    for what, check in [*((key, lambda q=queue: q.url) for key, queue in queues.items()),
                        *resources.checks().items()]:
        try:
            answer = check()
        except SightfleetError as exc:
            problems.append(f"{what}: {exc}")
            continue
        if what in queues and _queue_path(str(answer)) != _queue_path(outputs.get(what, "")):
            problems.append(f"output {what} is {outputs.get(what)!r}, the queue answers at {answer!r}")
    if not outputs.get("WebUrl", "").startswith(("http://", "https://")):
        problems.append(f"output WebUrl is {outputs.get('WebUrl')!r}")
    return problems


def with_network(settings: Settings, options: DeployOptions) -> DeployOptions:
    """The options with VPC and subnets filled in: by default the default VPC, one default subnet per zone."""
    if options.vpc_id and options.subnet_ids:
        return options
    ec2 = client(settings, "ec2")
    with translated("find the VPC"):
        if options.vpc_id:
            vpc_id, filters = options.vpc_id, []
        else:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
            if not vpcs:
                raise DeployError(f"{settings.region} has no default VPC: pass --vpc-id and --subnet-ids")
            vpc_id, filters = vpcs[0]["VpcId"], [{"Name": "default-for-az", "Values": ["true"]}]
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, *filters])["Subnets"]
    by_zone: dict[str, str] = {}
    for subnet in sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"])):
        by_zone.setdefault(subnet["AvailabilityZone"], subnet["SubnetId"])
    if len(by_zone) < 2:
        raise DeployError(f"VPC {vpc_id} has subnets in {len(by_zone)} zone(s); the load balancer needs two: "
                          "pass --subnet-ids")
    return replace(options, vpc_id=vpc_id, subnet_ids=options.subnet_ids or ",".join(by_zone.values()))


def _queue_path(url: str) -> str:
    """account/name of a queue URL: CloudFormation names the AWS host even where a local endpoint answers."""
    return "/".join(url.rstrip("/").split("/")[-2:])


def deploy(settings: Settings, options: DeployOptions, waiting: Waiting | None = None) -> str:
    """Create or update the stack, check every resource answers; returns the web URL."""
    options = with_network(settings, options)
    bundle = "" if options.image_id else upload_bundle(settings)
    stack = Stack(settings, waiting)
    outcome = stack.apply(build_template(stack_settings(settings, options, bundle)), options.parameters())
    if outcome == "unchanged":
        log.info("stack %s is up to date: no changes", stack.name)
    else:
        log.info("stack %s %s", stack.name, outcome)
    outputs = stack.outputs()
    problems = check_outputs(settings, outputs)
    if problems:
        raise DeployError("the stack is up but does not answer as it should: " + "; ".join(problems))
    log.info("every resource of stack %s answers", stack.name)
    return outputs["WebUrl"]


def _empty_bucket(settings: Settings, name: str) -> int:
    """Delete every object (and version) of a bucket that exists; returns how many."""
    s3 = client(settings, "s3")
    if not _exists(lambda: s3.head_bucket(Bucket=name)):
        return 0
    removed = 0
    with translated(f"empty bucket {name}"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            doomed = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                      for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if doomed:
                s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
                removed += len(doomed)
    return removed


def _wait_until_gone(fleet: Fleet, what: str, waiting: Waiting, terminate: bool) -> None:
    """Wait (terminating them if asked) until no instance of the fleet holds the stack's network."""
    deadline, pause = time.monotonic() + waiting.timeout_s, 0.25
    while instances := fleet.instances(NOT_GONE):
        if terminate:
            fleet.terminate([i.id for i in instances if i.state not in ("shutting-down",)])
        if time.monotonic() > deadline:
            raise DeployError(f"{len(instances)} {what} instances still not terminated")
        log.info("waiting for %d %s instance(s) to terminate", len(instances), what)
        waiting.sleep(pause)
        pause = min(pause * 2, waiting.max_poll_s)


def destroy(settings: Settings, waiting: Waiting | None = None) -> None:
    """Stop the controller and its workers, empty the buckets, delete the stack and the artefacts bucket."""
    waiting = waiting or Waiting()
    names = settings.names
    stack = Stack(settings, waiting)
    current = stack.describe()
    if current is None:
        log.info("there is no stack %s; removing what it may have left", stack.name)
    else:
        group = stack.physical_id(CONTROLLER_GROUP)
        if group:
            # First the controller, or it would launch workers for the backlog while they are stopped.
            with translated(f"stop controller group {group}"):
                client(settings, "autoscaling").update_auto_scaling_group(
                    AutoScalingGroupName=group, MinSize=0, MaxSize=0, DesiredCapacity=0)
            _wait_until_gone(Fleet(settings, role="controller"), "controller", waiting, terminate=False)
    # Workers are launched by the controller, not by CloudFormation: they would hold the subnet.
    _wait_until_gone(Fleet(settings), "worker", waiting, terminate=True)
    for name in (names.input_bucket, names.output_bucket):
        removed = _empty_bucket(settings, name)
        if removed:
            log.info("emptied bucket %s (%d objects)", name, removed)
    if current is not None:
        stack.delete(current)
    s3 = client(settings, "s3")
    _empty_bucket(settings, names.artefacts_bucket)
    if _exists(lambda: s3.head_bucket(Bucket=names.artefacts_bucket)):
        with translated(f"delete bucket {names.artefacts_bucket}"):
            s3.delete_bucket(Bucket=names.artefacts_bucket)
    left = leftovers(settings)
    if left:
        raise DeployError(f"stack {stack.name} is deleted but these remain: {', '.join(left)}")
    log.info("stack %s is gone: nothing of prefix %s is left", stack.name, names.prefix)


def leftovers(settings: Settings) -> list[str]:
    """Everything of the prefix that still exists: the stack, queues, buckets, tables, roles, templates, instances."""
    names = settings.names
    sqs, s3, ddb = client(settings, "sqs"), client(settings, "s3"), client(settings, "dynamodb")
    iam, ec2 = client(settings, "iam"), client(settings, "ec2")
    checks: dict[str, Callable[[], object]] = {f"stack {names.stack_name}": lambda: Stack(settings).describe() or _gone()}
    for queue in (names.request_queue, names.dead_letter_queue, names.response_queue):
        checks[f"queue {queue}"] = partial(sqs.get_queue_url, QueueName=queue)
    for bucket in (names.input_bucket, names.output_bucket, names.artefacts_bucket):
        checks[f"bucket {bucket}"] = partial(s3.head_bucket, Bucket=bucket)
    for table in (names.results_table, names.fleet_table, names.accounts_table, names.limits_table,
                  names.labels_table):
        checks[f"table {table}"] = partial(ddb.describe_table, TableName=table)
    for role in SERVICE_ROLES:
        name = names.role_name(role)
        checks[f"role {name}"] = partial(iam.get_role, RoleName=name)
        checks[f"instance profile {name}"] = partial(iam.get_instance_profile, InstanceProfileName=name)
        checks[f"launch template {name}"] = partial(ec2.describe_launch_templates, LaunchTemplateNames=[name])
        checks[f"{role} instances"] = partial(_instances_or_gone, Fleet(settings, role=role))
    checks["security groups"] = lambda: ec2.describe_security_groups(Filters=[
        {"Name": f"tag:{names.stack_tag}", "Values": [names.prefix]}])["SecurityGroups"] or _gone()
    return [what for what, check in checks.items() if _exists(check)]


def _gone():
    """For checks whose call answers with an empty list rather than an error."""
    raise _Gone()


def _instances_or_gone(fleet: Fleet) -> list:
    return fleet.instances(NOT_GONE) or _gone()


class _Gone(ClientError):
    def __init__(self):
        super().__init__({"Error": {"Code": "NotFound", "Message": "none"}}, "check")
