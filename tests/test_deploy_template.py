"""The deploy template on its own: what moto ignores (TTL, bucket protection, launch settings), policies equal
to ami/iam, cfn-lint, the Packer template, the controller's refusal, and a deploy tool that installs lightly."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from controller.__main__ import launch_problem
from controller.metrics import METRIC_NAMES
from sightfleet.deploy.templates import WorkerLaunch, iam_policy, user_data
from sightfleet.aws.dynamodb import results_table_spec
from sightfleet.config import Settings
from sightfleet.deploy.bundle import build_bundle, bundle_files, bundle_key
from sightfleet.deploy.cloudformation import planned_template
from sightfleet.aws.accounts import accounts_table_spec
from sightfleet.deploy.template import (MAX_TEMPLATE_URL_BYTES, SERVICE_ROLES, DeployOptions, accounts_policy, limits_policy,
                                        build_template, policy_document, stack_settings, template_body)
from tests.support import REPO

ACCOUNT, REGION = "123456789012", "eu-west-1"
BUNDLE = "s3://acme-prod-artefacts/bundles/sightfleet-" + "0123abcd" * 8 + ".tar.gz"
SETTINGS = Settings(prefix="acme-prod", region=REGION, input_bucket="acme-in", output_bucket="acme-out")
LAUNCH = WorkerLaunch("lt-0123456789abcdef0", "subnet-0a1b2c3d", "sg-0a1b2c3d", "t3.large")
# What CloudFormation puts for the pseudo parameters and the references of the policies.
PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
          "WorkerLaunchTemplate": LAUNCH.worker_launch_template, "WorkerSubnet": LAUNCH.worker_subnet,
          "WorkerSecurityGroup.GroupId": LAUNCH.worker_security_group, "WorkerInstanceType": "t3.large",
          "InputBucket": "acme-in", "OutputBucket": "acme-out"}


def built(options: DeployOptions = DeployOptions(), settings: Settings = SETTINGS) -> dict:
    return build_template(stack_settings(settings, options, BUNDLE))


@pytest.fixture(scope="module")
def template() -> dict:
    return built()


def of_type(template: dict, kind: str) -> dict[str, dict]:
    return {key: r["Properties"] for key, r in template["Resources"].items() if r["Type"] == kind}


def resolved(value, pseudo: dict[str, str]):
    """The template value with Fn::Sub of pseudo parameters and references done, as CloudFormation would."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        for name, replacement in pseudo.items():
            text = text.replace("${" + name + "}", replacement)
        assert "${" not in text.replace("${!", ""), text   # every variable resolved
        return text.replace("${!", "${")
    if isinstance(value, dict):
        return {k: resolved(v, pseudo) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v, pseudo) for v in value]
    return value


def test_every_name_comes_from_resource_names(template):
    names = SETTINGS.names
    queues = {p["QueueName"] for p in of_type(template, "AWS::SQS::Queue").values()}
    assert queues == {names.request_queue, names.dead_letter_queue, names.response_queue, names.webhook_queue}
    assert {p["BucketName"] for p in of_type(template, "AWS::S3::Bucket").values()} == {"acme-in", "acme-out"}
    tables = {p["TableName"] for p in of_type(template, "AWS::DynamoDB::Table").values()}
    assert tables == {names.results_table, names.fleet_table, names.accounts_table, names.limits_table,
                      names.labels_table}
    for kind, key in [("AWS::IAM::Role", "RoleName"), ("AWS::IAM::InstanceProfile", "InstanceProfileName"),
                      ("AWS::EC2::LaunchTemplate", "LaunchTemplateName")]:
        assert {p[key] for p in of_type(template, kind).values()} == {names.role_name(r) for r in SERVICE_ROLES}
    # The controller may pass only <prefix>-worker: the worker role must carry exactly that name.
    passed = [s for s in iam_policy("controller-policy", SETTINGS, ACCOUNT, LAUNCH)["Statement"]
              if s["Sid"] == "PassOnlyTheWorkerRole"]
    assert passed[0]["Resource"].endswith(":role/" + template["Resources"]["WorkerRole"]["Properties"]["RoleName"])


@pytest.mark.parametrize("role", SERVICE_ROLES)
def test_the_template_policies_are_the_ami_iam_files(template, role):
    """Resolved for an account and region, each role's policies equal ami/iam/*.json rendered by iam_policy."""
    props = template["Resources"][f"{role.capitalize()}Role"]["Properties"]
    pseudo = PSEUDO
    assert resolved(props["AssumeRolePolicyDocument"], pseudo) == iam_policy("ec2-trust-policy", SETTINGS, ACCOUNT)
    documents = [resolved(p["PolicyDocument"], pseudo) for p in props["Policies"]]
    expected = [iam_policy(f"{role}-policy", SETTINGS, ACCOUNT, LAUNCH),
                iam_policy("code-bundle-policy", SETTINGS, ACCOUNT)]
    if role == "web":  # and the accounts and limits grants (test_the_web_role_reads_accounts_and_the_session_key_only)
        expected += [resolved(accounts_policy(SETTINGS.names), pseudo), resolved(limits_policy(SETTINGS.names), pseudo)]
    assert documents == expected
    # And nothing region- or account-specific is left unsubstituted in the template itself.
    assert REGION not in json.dumps(policy_document(f"{role}-policy", SETTINGS)) and ACCOUNT not in json.dumps(props)


def test_queues_have_redrive_to_the_dead_letter_queue(template):
    request = template["Resources"]["RequestQueue"]["Properties"]
    assert request["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                                        "maxReceiveCount": SETTINGS.max_receive_count}
    assert request["VisibilityTimeout"] == SETTINGS.visibility_timeout_s


def test_buckets_are_private_and_encrypted(template):
    """moto's CloudFormation ignores the public access block: checked here."""
    for name, props in of_type(template, "AWS::S3::Bucket").items():
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}, name
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), name
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_tables_have_the_indexes_of_ensure_tables_and_the_fleet_ttl(template):
    """moto's CloudFormation ignores TimeToLiveSpecification: checked here (FleetTable.put writes expires_at)."""
    results = template["Resources"]["ResultsTable"]["Properties"]
    spec = results_table_spec(SETTINGS.names.results_table)
    assert {k: results[k] for k in spec} == spec
    fleet = template["Resources"]["FleetTable"]["Properties"]
    assert fleet["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert fleet["BillingMode"] == results["BillingMode"] == "PAY_PER_REQUEST"


@pytest.mark.parametrize("role", SERVICE_ROLES)
def test_launch_templates_require_imdsv2_encrypt_and_carry_profile_tags_and_user_data(template, role):
    """moto ignores metadata options and the profile of a launch template: checked here."""
    title = role.capitalize()
    lt = template["Resources"][f"{title}LaunchTemplate"]["Properties"]
    data = lt["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required" and data["MetadataOptions"]["HttpEndpoint"] == "enabled"
    assert data["IamInstanceProfile"] == {"Arn": {"Fn::GetAtt": [f"{title}Profile", "Arn"]}}
    ebs = data["BlockDeviceMappings"][0]["Ebs"]
    assert ebs["Encrypted"] is True and ebs["DeleteOnTermination"] is True
    # The mapping must name the image's root device, or the root stays as the image made it.
    assert data["BlockDeviceMappings"][0]["DeviceName"] == {"Fn::If": ["HasImageId", "/dev/sda1", "/dev/xvda"]}
    assert data["UserData"] == {"Fn::Base64": user_data(stack_settings(SETTINGS, DeployOptions(), BUNDLE), role)}
    tags = {t["Key"]: t["Value"] for spec in data["TagSpecifications"] for t in spec["Tags"]}
    assert tags["sightfleet:stack"] == "acme-prod" and tags["sightfleet:role"] == role
    # The controller's policy launches only from a template tagged with the stack.
    assert lt["TagSpecifications"] == [{"ResourceType": "launch-template",
                                        "Tags": [{"Key": "sightfleet:stack", "Value": "acme-prod"}]}]
    assert data["NetworkInterfaces"][0]["Groups"] == [{"Ref": f"{title}SecurityGroup"}]
    if role == "worker":
        assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
        # Hibernation into the warm pool: enabled at launch (not for spot), room on the root for the RAM.
        assert data["HibernationOptions"] == {"Fn::If": ["UseSpot", {"Ref": "AWS::NoValue"}, {"Configured": True}]}
        assert ebs["VolumeSize"] >= 24
        assert "SubnetId" in data["NetworkInterfaces"][0]  # RunInstances has no group to pick one
    else:
        assert "InstanceInitiatedShutdownBehavior" not in data


def test_instances_run_with_the_stack_settings_and_the_web_tier_listens_beyond_loopback(template):
    env = dict(line.split("=", 1) for line in user_data(stack_settings(SETTINGS, DeployOptions(), BUNDLE), "web")
               .split("<<'SIGHTFLEET_ENV'\n", 1)[1].split("\nSIGHTFLEET_ENV", 1)[0].splitlines())
    back = Settings.from_env({k: v.strip('"') for k, v in env.items()})
    assert back.web_host == "0.0.0.0" and back.port == 8000 and back.launch_template == "acme-prod-worker"
    assert back.code_bundle == BUNDLE and back.input_bucket == "acme-in"
    assert launch_problem(back) is None
    # A baked image already holds the code: no bundle to fetch.
    assert stack_settings(SETTINGS, DeployOptions(image_id="ami-0123456789abcdef0"), BUNDLE).code_bundle == ""


def test_only_the_load_balancer_takes_connections_from_the_client_cidr(template):
    groups = of_type(template, "AWS::EC2::SecurityGroup")
    assert groups["WorkerSecurityGroup"]["SecurityGroupIngress"] == []
    assert groups["ControllerSecurityGroup"]["SecurityGroupIngress"] == []
    assert {r["CidrIp"]["Ref"] for r in groups["LoadBalancerSecurityGroup"]["SecurityGroupIngress"]} == {"ClientCidr"}
    web = groups["WebSecurityGroup"]["SecurityGroupIngress"]
    assert web == [{"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8000, "Description": "load balancer",
                    "SourceSecurityGroupId": {"Ref": "LoadBalancerSecurityGroup"}}]


def test_web_tier_checks_healthz_and_uses_https_with_a_certificate(template):
    resources = template["Resources"]
    target = resources["WebTargetGroup"]["Properties"]
    assert target["HealthCheckPath"] == "/healthz" and target["Port"] == 8000
    assert resources["HttpsListener"]["Condition"] == "HasCertificate"
    assert resources["HttpsListener"]["Properties"]["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    http_actions = resources["HttpListener"]["Properties"]["DefaultActions"]["Fn::If"]
    assert http_actions[0] == "HasCertificate" and http_actions[1][0]["Type"] == "redirect"
    web = resources["WebGroup"]["Properties"]
    assert web["TargetGroupARNs"] == [{"Ref": "WebTargetGroup"}] and web["HealthCheckType"] == "ELB"
    assert template["Parameters"]["WebInstances"]["MinValue"] == 1
    # Synchronous recognition waits up to 120 s: the load balancer must not cut it off at its default 60 s.
    attributes = {a["Key"]: a["Value"] for a in resources["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]}
    assert int(attributes["idle_timeout.timeout_seconds"]) > 120


def test_exactly_one_controller_and_the_outputs(template):
    controller = template["Resources"]["ControllerGroup"]["Properties"]
    assert controller["MinSize"] == controller["MaxSize"] == controller["DesiredCapacity"] == "1"
    assert set(template["Outputs"]) >= {"WebUrl", "RequestQueueUrl", "ResponseQueueUrl", "DeadLetterQueueUrl",
                                         "InputBucket", "OutputBucket", "ResultsTable", "FleetTable"}


def test_every_option_is_a_parameter_and_fits_cloudformation():
    template = built(DeployOptions(spot=True, key_name="ops"))
    for parameter in DeployOptions(vpc_id="vpc-1", subnet_ids="subnet-1,subnet-2").parameters():
        assert parameter["ParameterKey"] in template["Parameters"], parameter
    # Past the inline limit scripts/deploy passes the template through S3 (tests/test_deploy_stack.py deploys it).
    assert len(template_body(template).encode()) < MAX_TEMPLATE_URL_BYTES
    assert template_body(built()) == template_body(built())  # same input, same bytes: a second deploy is a no-op


@pytest.mark.slow
def test_cfn_lint_finds_no_errors(tmp_path):
    """cfn-lint (offline, from the registry) on the template as deployed; its errors fail the test."""
    from cfnlint.api import lint_all

    body = template_body(built())
    matches = lint_all(body)
    assert [m for m in matches if str(m.rule.id).startswith("E")] == [], [str(m) for m in matches]
    # It can fail: a broken reference is an error.
    broken = json.loads(body)
    broken["Resources"]["RequestQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] = {"Fn::GetAtt": ["Nope", "Arn"]}
    assert any(str(m.rule.id).startswith("E") for m in lint_all(json.dumps(broken)))


def test_the_packer_image_requires_imdsv2_and_encrypts_its_boot_volume():
    import hcl2

    with (REPO / "ami" / "packer" / "sightfleet.pkr.hcl").open() as handle:
        parsed = hcl2.load(handle)
    (source,) = [body for block in parsed["source"] for kind in block.values() for body in kind.values()]
    unquoted = lambda value: value.strip('"') if isinstance(value, str) else value  # noqa: E731
    assert unquoted(source["imds_support"]) == "v2.0"
    assert unquoted(source["metadata_options"][0]["http_tokens"]) == "required"
    assert source["encrypt_boot"] is True
    assert all(device["encrypted"] is True for device in source["launch_block_device_mappings"])


@pytest.mark.parametrize("changes, problem", [
    ({}, "SIGHTFLEET_IMAGE_ID='ami-sightfleet-worker' is not an AMI id"),
    ({"image_id": "ami-0123456789abcdef0"}, "SIGHTFLEET_INSTANCE_PROFILE is not set"),
    ({"image_id": "ami-0123456789abcdef0", "instance_profile": "acme-worker"}, None),
    ({"launch_template": "acme-worker"}, None),
    ({"endpoint_url": "http://127.0.0.1:4566"}, None),
])
def test_the_controller_refuses_aws_without_image_and_profile_or_template(changes, problem):
    found = launch_problem(Settings(prefix="acme", **changes))
    assert (found is None) if problem is None else (problem in found), found


def deploy_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGHTFLEET_", "AWS_ENDPOINT"))}
    return {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            **extra}


def test_the_controller_process_exits_with_the_reason_before_any_call():
    reply = subprocess.run([sys.executable, "-m", "controller"], cwd=REPO, capture_output=True, text=True, timeout=60,
                           env=deploy_env(SIGHTFLEET_PREFIX="acme"))
    assert reply.returncode == 2 and "refusing to start" in reply.stderr and "SIGHTFLEET_IMAGE_ID" in reply.stderr


def test_the_deploy_tooling_imports_neither_torch_nor_images():
    probe = ("import sys, sightfleet.deploy.__main__, sightfleet.deploy.cloudformation\n"
             "print(sorted(m for m in ('torch', 'cv2', 'PIL', 'numpy', 'flask', 'app_tier') if m in sys.modules))")
    reply = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert reply.returncode == 0 and reply.stdout.strip() == "[]", reply.stdout + reply.stderr


@pytest.mark.slow
def test_help_lists_the_parameters_and_template_calls_no_aws():
    helped = subprocess.run([str(REPO / "scripts" / "deploy"), "--help"], capture_output=True, text=True, timeout=60,
                            env=deploy_env())
    assert helped.returncode == 0
    for flag in ("--worker-instance-type", "--web-instance-type", "--controller-instance-type", "--max-instances",
                 "--client-cidr", "--image-id", "--certificate-arn", "--key-name", "--spot", "--vpc-id"):
        assert flag in helped.stdout, flag
    # An endpoint that answers nothing: printing the template must not need it.
    printed = subprocess.run([str(REPO / "scripts" / "deploy"), "--template", "--max-instances", "7"],
                             capture_output=True, text=True, timeout=60,
                             env=deploy_env(AWS_ENDPOINT_URL="http://127.0.0.1:9", SIGHTFLEET_PREFIX="acme-prod"))
    assert printed.returncode == 0, printed.stderr
    settings = Settings(prefix="acme-prod", endpoint_url="http://127.0.0.1:9", max_instances=7)
    assert json.loads(printed.stdout) == planned_template(settings, DeployOptions())
    assert 'SIGHTFLEET_MAX_INSTANCES=\\"7\\"' in printed.stdout


@pytest.mark.slow
def test_bad_configuration_is_refused_with_status_2():
    reply = subprocess.run([str(REPO / "scripts" / "deploy")], capture_output=True, text=True, timeout=60,
                           env=deploy_env(SIGHTFLEET_PREFIX="Not A Prefix"))
    assert reply.returncode == 2 and "SIGHTFLEET_PREFIX must be" in reply.stderr


def test_the_code_bundle_is_the_code_without_tests_and_is_reproducible():
    files = bundle_files()
    assert {"ami/install.sh", "requirements.txt", "sightfleet/config.py", "app_tier/__main__.py"} <= set(files)
    assert not any(f.startswith(("tests/", "devstack/", "testkit/", ".git", ".venv", ".run/")) or "__pycache__" in f
                   for f in files)
    assert bundle_key(build_bundle()) == bundle_key(build_bundle())


def test_untracked_files_beside_the_code_never_reach_the_bundle(tmp_path):
    import subprocess
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "app.py").write_text("print('code')\n")
    (tmp_path / ".env").write_text("AWS_SECRET_ACCESS_KEY=example\n")
    (tmp_path / "notes.txt").write_text("untracked\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "app.py"], check=True)
    assert bundle_files(tmp_path) == ["app.py"]


# --- accounts and the session key ------------------------------------------------------------------

def test_the_accounts_table_is_the_one_provisioning_makes_and_its_links_expire(template):
    props = template["Resources"]["AccountsTable"]["Properties"]
    assert {k: v for k, v in props.items() if k not in ("Tags", "TimeToLiveSpecification")} == \
        accounts_table_spec(SETTINGS.names.accounts_table)
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_the_session_key_is_generated_by_the_stack_and_never_in_the_template_or_user_data():
    secret = {**SETTINGS.__dict__, "secret_key": "typed-in-the-deploying-shell"}
    template = built(settings=Settings(**secret))
    key = template["Resources"]["SessionKey"]
    assert key["Type"] == "AWS::SecretsManager::Secret"
    assert key["Properties"]["Name"] == SETTINGS.names.session_secret
    assert key["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    assert "typed-in-the-deploying-shell" not in template_body(template)
    text = user_data(stack_settings(Settings(**secret), DeployOptions(), BUNDLE), "web")
    assert "typed-in-the-deploying-shell" not in text
    env = dict(line.split("=", 1) for line in text.splitlines() if line.startswith("SIGHTFLEET_") and "=" in line)
    assert env["SIGHTFLEET_SECRET_KEY_SECRET"] == f'"{SETTINGS.names.session_secret}"'
    assert env["SIGHTFLEET_TRUSTED_PROXIES"] == '"1"' and env.get("SIGHTFLEET_SECRET_KEY", '""') == '""'


def test_the_credentials_key_is_generated_by_the_stack_and_only_the_web_tier_is_told_where():
    typed = Settings(**{**SETTINGS.__dict__, "credentials_key": "typed-in-the-deploying-shell-0123456789"})
    template = built(settings=typed)
    key = template["Resources"]["CredentialsKey"]
    assert key["Type"] == "AWS::SecretsManager::Secret" and key["Properties"]["Name"] == SETTINGS.names.credentials_secret
    assert key["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    assert "typed-in-the-deploying-shell" not in template_body(template)
    for role in ("web", "worker", "controller"):
        text = user_data(stack_settings(typed, DeployOptions(), BUNDLE), role)
        assert "typed-in-the-deploying-shell" not in text and "SIGHTFLEET_CREDENTIALS_KEY=" not in text


def test_the_web_role_reads_accounts_and_the_session_key_only(template):
    policies = {p["PolicyName"]: p["PolicyDocument"] for p in template["Resources"]["WebRole"]["Properties"]["Policies"]}
    statements = resolved(policies["accounts"], {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT})["Statement"]
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/acme-prod-accounts"
    granted = {(action, json.dumps(s["Resource"])) for s in statements for action in s["Action"]}
    assert granted == {(a, json.dumps(table)) for a in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem",
                                                          "dynamodb:DescribeTable", "dynamodb:UpdateItem")} | {
        ("dynamodb:Query", json.dumps(table + "/index/account-items")),
        ("secretsmanager:GetSecretValue", json.dumps([{"Ref": "SessionKey"}, {"Ref": "CredentialsKey"}]))}
    for role in ("worker", "controller"):  # nobody else touches accounts
        assert "accounts" not in json.dumps(template["Resources"][f"{role.capitalize()}Role"])


def test_the_web_role_counts_limits_in_its_table_only_and_never_scans_it(template):
    documents = [p["PolicyDocument"] for p in template["Resources"]["WebRole"]["Properties"]["Policies"]
                 if p["PolicyName"] == "limits"]
    [statement] = resolved(documents[0], {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT})["Statement"]
    assert statement["Resource"].endswith(f":table/{SETTINGS.names.limits_table}")
    assert "dynamodb:UpdateItem" in statement["Action"]
    assert not {"dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:PutItem"} & set(statement["Action"])


def test_alarms_notify_one_topic_and_the_address_is_optional(template):
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    assert set(alarms) == {"DeadLettersAlarm", "WorkerSilentAlarm", "FleetAtCapAlarm", "ControllerSilentAlarm",
                           "WebUnhealthyAlarm", "ResultsTableErrorsAlarm"}
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
    namespace = SETTINGS.names.metrics_namespace
    for alarm in alarms.values():   # every metric of ours that an alarm watches is one the controller publishes
        assert alarm["Namespace"] != namespace or alarm["MetricName"] in METRIC_NAMES
    assert alarms["FleetAtCapAlarm"]["Threshold"] == SETTINGS.max_instances
    assert alarms["ControllerSilentAlarm"]["TreatMissingData"] == "breaching"
    assert alarms["DeadLettersAlarm"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    subscription = template["Resources"]["AlarmSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail" and subscription["Properties"]["Protocol"] == "email"
    pattern = template["Parameters"]["AlarmEmail"]["AllowedPattern"]
    assert re.match(pattern, "") and re.match(pattern, "ops@example.com") and not re.match(pattern, "not an address")
    assert {"ParameterKey": "AlarmEmail", "ParameterValue": "ops@example.com"} in \
        DeployOptions(alarm_email="ops@example.com").parameters()


def test_cfn_lint_catches_a_broken_alarm():
    from cfnlint.api import lint_all
    broken = built()
    broken["Resources"]["DeadLettersAlarm"]["Properties"]["ComparisonOperator"] = "Bigger"
    assert any(str(m.rule.id).startswith("E") for m in lint_all(template_body(broken)))
