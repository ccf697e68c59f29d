"""The CloudFormation template of one stack, built from ResourceNames, ami/iam/*.json and the user data.

Nothing here is written twice: names come from `Settings.names`, the results table from the spec
`ensure_tables` uses, policies from `controller.templates.iam_policy` (with CloudFormation's
pseudo parameters in place of region and account) and each role's boot script from
`controller.templates.user_data`. Settings an instance reads (the fleet cap, the bundle) are
rendered into its user data, which refuses `$`, so they are fixed when the template is built;
what CloudFormation alone uses (instance types, CIDR, image, certificate, key pair, spot, the
network) are template parameters. The stack runs in an existing VPC (by default the region's
default VPC) rather than one of its own: no NAT or gateway to pay for or to leave behind.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields

from controller.templates import iam_policy, user_data
from sightfleet.aws.dynamodb import TTL_ATTRIBUTE, fleet_table_spec, results_table_spec
from sightfleet.aws.limits import limits_table_spec
from sightfleet.aws.sqs import DEAD_LETTER_RETENTION_S, RETENTION_S
from sightfleet.config import ResourceNames, Settings

STOCK_IMAGE_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# CloudFormation's limit for a template passed inline (TemplateBody).
MAX_TEMPLATE_BODY_BYTES = 51_200
# Root devices: Amazon Linux (the stock image) boots from /dev/xvda, the Ubuntu image ami/packer bakes from /dev/sda1.
STOCK_ROOT_DEVICE, BAKED_ROOT_DEVICE = "/dev/xvda", "/dev/sda1"
ROOT_VOLUME_GB = 16
# A hibernating worker writes its RAM to the encrypted root volume: room for up to 16 GiB of
# memory beside the image (t3.large has 8). gp3 costs about $0.08 per GB-month, stopped or not.
WORKER_ROOT_VOLUME_GB = 32
# Above the longest synchronous wait (120 s for POST /), so the load balancer never cuts one off.
LOAD_BALANCER_IDLE_TIMEOUT_S = 130
# A stock image installs Python, the dependencies and the models at boot before /healthz answers.
WEB_HEALTH_GRACE_S = 900
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
SERVICE_ROLES = ("worker", "web", "controller")
# Logical ids of the resources scripts/deploy and scripts/destroy look up.
CONTROLLER_GROUP = "ControllerGroup"
BUCKETS = ("InputBucket", "OutputBucket")


@dataclass(frozen=True)
class DeployOptions:
    """What an operator may choose; each field is a `scripts/deploy --option` (underscores as dashes)."""

    worker_instance_type: str = "t3.large"
    web_instance_type: str = "t3.small"
    controller_instance_type: str = "t3.small"
    web_instances: int = 1
    client_cidr: str = "0.0.0.0/0"
    image_id: str = ""
    certificate_arn: str = ""
    key_name: str = ""
    spot: bool = False
    # Empty: the region's default VPC and its default subnets, looked up by scripts/deploy.
    vpc_id: str = ""
    subnet_ids: str = ""

    def parameters(self) -> list[dict]:
        """The values of the template's parameters, as CreateStack takes them."""
        return [{"ParameterKey": _parameter_name(spec.name), "ParameterValue": _parameter_value(getattr(self, spec.name))}
                for spec in fields(self)]


def _parameter_name(option: str) -> str:
    return "".join(word.capitalize() for word in option.split("_"))


def _parameter_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


PARAMETER_DOCS = {
    "worker_instance_type": "EC2 instance type of a worker (loads both models: 2 GiB or more)",
    "web_instance_type": "EC2 instance type of a web instance",
    "controller_instance_type": "EC2 instance type of the controller",
    "web_instances": "web instances behind the load balancer",
    "client_cidr": "the only addresses the load balancer accepts (0.0.0.0/0: anyone)",
    "image_id": "an image baked with ami/packer; empty: stock Amazon Linux 2023, code installed at boot",
    "certificate_arn": "an ACM certificate for HTTPS on the load balancer; empty: HTTP only",
    "key_name": "an EC2 key pair for SSH; empty: none",
    "spot": "run workers as spot instances",
    "vpc_id": "the VPC to run in; empty: the region's default VPC",
    "subnet_ids": "comma-separated public subnets of that VPC in two zones or more (workers use the first); "
                  "empty: the default VPC's",
}


def stack_settings(settings: Settings, options: DeployOptions, code_bundle: str) -> Settings:
    """The settings every instance of the deployed stack runs with."""
    return settings.with_changes(
        launch_template=settings.names.role_name("worker"), instance_type=options.worker_instance_type,
        image_id=options.image_id or settings.image_id, web_host="0.0.0.0",
        code_bundle="" if options.image_id else code_bundle)


def _ref(name: str) -> dict:
    return {"Ref": name}


def _att(name: str, attribute: str) -> dict:
    return {"Fn::GetAtt": [name, attribute]}


def _tags(names: ResourceNames, role: str | None = None) -> list[dict]:
    tags = [{"Key": names.stack_tag, "Value": names.prefix}]
    if role:
        tags += [{"Key": names.role_tag, "Value": role}, {"Key": "Name", "Value": names.role_name(role)}]
    return tags


def _substituted(value):
    """Wrap every string that names a pseudo parameter in Fn::Sub."""
    if isinstance(value, dict):
        return {key: _substituted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_substituted(item) for item in value]
    if isinstance(value, str) and "${AWS::" in value:
        return {"Fn::Sub": value}
    return value


def policy_document(name: str, settings: Settings) -> dict:
    """One ami/iam policy as the template holds it: region and account left to CloudFormation."""
    return _substituted(iam_policy(name, settings.with_changes(region="${AWS::Region}"), "${AWS::AccountId}"))


def _parameters() -> dict:
    defaults = DeployOptions()
    out = {}
    for spec in fields(DeployOptions):
        value = getattr(defaults, spec.name)
        out[_parameter_name(spec.name)] = {"Type": "Number" if isinstance(value, int) and not isinstance(value, bool)
                                           else "String",
                                           "Default": _parameter_value(value), "Description": PARAMETER_DOCS[spec.name]}
    out["WebInstances"]["MinValue"] = 1
    out["Spot"]["AllowedValues"] = ["true", "false"]
    out["ClientCidr"]["AllowedPattern"] = r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$"
    out["ImageId"]["AllowedPattern"] = r"^(ami-[0-9a-f]{8,17})?$"
    out["VpcId"] = {"Type": "AWS::EC2::VPC::Id", "Description": PARAMETER_DOCS["vpc_id"]}
    out["SubnetIds"] = {"Type": "List<AWS::EC2::Subnet::Id>", "Description": PARAMETER_DOCS["subnet_ids"]}
    out["StockImage"] = {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": STOCK_IMAGE_PARAMETER,
                         "Description": "AWS's public parameter naming the current stock image"}
    return out


_CONDITIONS = {
    "HasImageId": {"Fn::Not": [{"Fn::Equals": [_ref("ImageId"), ""]}]},
    "HasCertificate": {"Fn::Not": [{"Fn::Equals": [_ref("CertificateArn"), ""]}]},
    "HasKeyName": {"Fn::Not": [{"Fn::Equals": [_ref("KeyName"), ""]}]},
    "UseSpot": {"Fn::Equals": [_ref("Spot"), "true"]},
}


def _subnets() -> dict:
    return _ref("SubnetIds")


def _queues(settings: Settings) -> dict:
    """The queues ensure_queues makes: requests with redrive to its dead-letter queue, and responses."""
    names = settings.names
    return {
        "DeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": names.dead_letter_queue, "MessageRetentionPeriod": DEAD_LETTER_RETENTION_S}},
        "RequestQueue": {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": names.request_queue, "VisibilityTimeout": settings.visibility_timeout_s,
            "ReceiveMessageWaitTimeSeconds": settings.receive_wait_s, "MessageRetentionPeriod": RETENTION_S,
            "RedrivePolicy": {"deadLetterTargetArn": _att("DeadLetterQueue", "Arn"),
                              "maxReceiveCount": settings.max_receive_count}}},
        "ResponseQueue": {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": names.response_queue, "MessageRetentionPeriod": RETENTION_S}},
    }


def _bucket(name: str, names: ResourceNames) -> dict:
    """A private bucket: public access blocked, encrypted at rest, no ACLs."""
    return {"Type": "AWS::S3::Bucket", "Properties": {
        "BucketName": name,
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                           "BlockPublicPolicy": True, "RestrictPublicBuckets": True},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]},
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "Tags": _tags(names)}}


def _tables(names: ResourceNames) -> dict:
    """The tables ensure_tables makes; the fleet table's rows expire (FleetTable.put writes expires_at)."""
    return {
        "ResultsTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
            **results_table_spec(names.results_table), "Tags": _tags(names)}},
        "FleetTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
            **fleet_table_spec(names.fleet_table),
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
            "Tags": _tags(names)}},
        # Issue 15, limits: rate windows (which expire) and image quotas, shared by every web instance.
        "LimitsTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
            **limits_table_spec(names.limits_table),
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
            "Tags": _tags(names)}},
    }


def _identity(role: str, settings: Settings) -> dict:
    """The role (its ami/iam policy and the code bundle's) and the instance profile that holds it."""
    names = settings.names
    title = role.capitalize()
    return {
        f"{title}Role": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": names.role_name(role),
            "AssumeRolePolicyDocument": policy_document("ec2-trust-policy", settings),
            "Policies": [{"PolicyName": names.role_name(role), "PolicyDocument": policy_document(f"{role}-policy", settings)},
                         {"PolicyName": "code-bundle", "PolicyDocument": policy_document("code-bundle-policy", settings)}],
            "Tags": _tags(names, role)}},
        f"{title}Profile": {"Type": "AWS::IAM::InstanceProfile", "Properties": {
            "InstanceProfileName": names.role_name(role), "Roles": [_ref(f"{title}Role")]}},
    }


def _security_groups(settings: Settings) -> dict:
    """Only the load balancer takes connections (from ClientCidr); web instances only from it; nothing else."""
    names = settings.names
    def group(description: str, ingress: list[dict], role: str | None = None) -> dict:
        return {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": description, "VpcId": _ref("VpcId"), "SecurityGroupIngress": ingress,
            "Tags": _tags(names, role)}}
    from_clients = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "CidrIp": _ref("ClientCidr"),
                     "Description": "clients"} for port in (80, 443)]
    from_balancer = [{"IpProtocol": "tcp", "FromPort": settings.port, "ToPort": settings.port,
                      "SourceSecurityGroupId": _ref("LoadBalancerSecurityGroup"), "Description": "load balancer"}]
    return {
        "LoadBalancerSecurityGroup": group(f"{names.prefix} load balancer: HTTP(S) from ClientCidr", from_clients),
        "WebSecurityGroup": group(f"{names.prefix} web: the load balancer only", from_balancer, "web"),
        "WorkerSecurityGroup": group(f"{names.prefix} workers: no ingress", [], "worker"),
        "ControllerSecurityGroup": group(f"{names.prefix} controller: no ingress", [], "controller"),
    }


def _launch_template(role: str, settings: Settings) -> dict:
    """IMDSv2 only, an encrypted root volume, the role's profile, tags and boot script."""
    names = settings.names
    title = role.capitalize()
    interface = {"DeviceIndex": 0, "AssociatePublicIpAddress": True, "Groups": [_ref(f"{title}SecurityGroup")]}
    data = {
        "ImageId": {"Fn::If": ["HasImageId", _ref("ImageId"), _ref("StockImage")]},
        "InstanceType": _ref(f"{title}InstanceType"),
        "IamInstanceProfile": {"Arn": _att(f"{title}Profile", "Arn")},
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [{
            "DeviceName": {"Fn::If": ["HasImageId", BAKED_ROOT_DEVICE, STOCK_ROOT_DEVICE]},
            "Ebs": {"Encrypted": True, "VolumeSize": WORKER_ROOT_VOLUME_GB if role == "worker" else ROOT_VOLUME_GB,
                    "VolumeType": "gp3", "DeleteOnTermination": True}}],
        "NetworkInterfaces": [interface],
        "KeyName": {"Fn::If": ["HasKeyName", _ref("KeyName"), _ref("AWS::NoValue")]},
        "UserData": {"Fn::Base64": user_data(settings, role)},
        "TagSpecifications": [{"ResourceType": kind, "Tags": _tags(names, role)} for kind in ("instance", "volume")],
    }
    if role == "worker":
        # The controller launches workers itself (RunInstances), so their subnet is fixed here.
        interface["SubnetId"] = {"Fn::Select": [0, _ref("SubnetIds")]}
        data["InstanceInitiatedShutdownBehavior"] = "terminate"
        data["InstanceMarketOptions"] = {"Fn::If": ["UseSpot", {
            "MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time",
                                                  "InstanceInterruptionBehavior": "terminate"}}, _ref("AWS::NoValue")]}
        # The warm pool hibernates idle workers; a one-time spot instance cannot be stopped at all, so
        # spot workers go without (they retire instead: README "The fleet").
        data["HibernationOptions"] = {"Fn::If": ["UseSpot", _ref("AWS::NoValue"), {"Configured": True}]}
    return {"Type": "AWS::EC2::LaunchTemplate", "Properties": {
        "LaunchTemplateName": names.role_name(role), "LaunchTemplateData": data,
        # The controller's policy launches only from a launch template carrying the stack's tag.
        "TagSpecifications": [{"ResourceType": "launch-template", "Tags": _tags(names)}]}}


def _group(role: str, names: ResourceNames, size, extra: dict) -> dict:
    title = role.capitalize()
    return {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {
        "AutoScalingGroupName": names.role_name(role),
        "LaunchTemplate": {"LaunchTemplateId": _ref(f"{title}LaunchTemplate"),
                           "Version": _att(f"{title}LaunchTemplate", "LatestVersionNumber")},
        "MinSize": size, "MaxSize": size, "DesiredCapacity": size, "VPCZoneIdentifier": _subnets(),
        "Tags": [{**tag, "PropagateAtLaunch": True} for tag in _tags(names, role)], **extra}}


def _web_tier(settings: Settings) -> dict:
    """An Auto Scaling group behind an Application Load Balancer that checks /healthz; HTTPS with a certificate."""
    names = settings.names
    forward = [{"Type": "forward", "TargetGroupArn": _ref("WebTargetGroup")}]
    redirect = [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
    return {
        "LoadBalancer": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {
            "Name": names.role_name("web"), "Type": "application", "Scheme": "internet-facing",
            "Subnets": _subnets(), "SecurityGroups": [_ref("LoadBalancerSecurityGroup")],
            "LoadBalancerAttributes": [{"Key": "idle_timeout.timeout_seconds",
                                        "Value": str(LOAD_BALANCER_IDLE_TIMEOUT_S)}],
            "Tags": _tags(names)}},
        "WebTargetGroup": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {
            "Name": names.role_name("web"), "VpcId": _ref("VpcId"), "Protocol": "HTTP", "Port": settings.port,
            "TargetType": "instance", "HealthCheckPath": "/healthz", "HealthCheckIntervalSeconds": 15,
            "HealthCheckTimeoutSeconds": 10, "HealthyThresholdCount": 2, "UnhealthyThresholdCount": 3,
            "Matcher": {"HttpCode": "200"},
            "TargetGroupAttributes": [{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}],
            "Tags": _tags(names)}},
        "HttpListener": {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Properties": {
            "LoadBalancerArn": _ref("LoadBalancer"), "Protocol": "HTTP", "Port": 80,
            "DefaultActions": {"Fn::If": ["HasCertificate", redirect, forward]}}},
        "HttpsListener": {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Condition": "HasCertificate", "Properties": {
            "LoadBalancerArn": _ref("LoadBalancer"), "Protocol": "HTTPS", "Port": 443, "SslPolicy": TLS_POLICY,
            "Certificates": [{"CertificateArn": _ref("CertificateArn")}], "DefaultActions": forward}},
        "WebGroup": _group("web", names, _ref("WebInstances"), {
            "TargetGroupARNs": [_ref("WebTargetGroup")], "HealthCheckType": "ELB",
            "HealthCheckGracePeriod": WEB_HEALTH_GRACE_S}),
        # Exactly one controller: a lost instance is replaced by the group.
        CONTROLLER_GROUP: _group("controller", names, "1", {"HealthCheckType": "EC2"}),
    }


def _outputs(names: ResourceNames) -> dict:
    scheme_url = {"Fn::If": ["HasCertificate", {"Fn::Sub": "https://${LoadBalancer.DNSName}"},
                             {"Fn::Sub": "http://${LoadBalancer.DNSName}"}]}
    values = {
        "WebUrl": scheme_url,
        "RequestQueueUrl": _ref("RequestQueue"), "DeadLetterQueueUrl": _ref("DeadLetterQueue"),
        "ResponseQueueUrl": _ref("ResponseQueue"),
        "InputBucket": _ref("InputBucket"), "OutputBucket": _ref("OutputBucket"),
        "ResultsTable": _ref("ResultsTable"), "FleetTable": _ref("FleetTable"),
        "WorkerLaunchTemplate": names.role_name("worker"),
        "WorkerInstanceProfile": _ref("WorkerProfile"),
    }
    return {key: {"Value": value} for key, value in values.items()}


def build_template(settings: Settings) -> dict:
    """The whole stack for these (stack) settings; see stack_settings."""
    names = settings.names
    resources = {**_queues(settings),
                 "InputBucket": _bucket(names.input_bucket, names), "OutputBucket": _bucket(names.output_bucket, names),
                 **_tables(names), **_security_groups(settings)}
    for role in SERVICE_ROLES:
        resources.update(_identity(role, settings))
        resources[f"{role.capitalize()}LaunchTemplate"] = _launch_template(role, settings)
    resources.update(_web_tier(settings))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Sightfleet stack {names.prefix}: queues, buckets, tables, roles, web tier, controller",
        "Parameters": _parameters(), "Conditions": _CONDITIONS, "Resources": resources,
        "Outputs": _outputs(names),
    }


def template_body(template: dict) -> str:
    """The template as CloudFormation receives it (compact JSON: the inline limit is 51,200 bytes)."""
    return json.dumps(template, separators=(",", ":"), sort_keys=True)
