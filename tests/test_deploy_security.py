"""A deployed stack that is safe by default: the roles' conditions evaluated on requests (moto checks no IAM),
the template's protections, cfn-lint and parliament on the policies, and scripts/deploy's exposure rules."""
from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import sys
import types

import pytest

from sightfleet.deploy.templates import POLICIES, WorkerLaunch, iam_policy, user_data
from sightfleet.config import Settings
from sightfleet.deploy.exposure import WORLD, Refused, decide, own_address
from sightfleet.aws.s3 import tls_only_policy
from sightfleet.deploy.template import DeployOptions, stack_settings, template_body
from tests.test_deploy_template import BUNDLE, built, of_type, resolved
from tests.test_fleet_ami import env_file_of
from tests.test_deploy_stack import run as run_script

ACCOUNT, REGION, PREFIX = "123456789012", "eu-west-1", "acme-prod"
SETTINGS = Settings(prefix=PREFIX, region=REGION)
LAUNCH = WorkerLaunch("lt-0123456789abcdef0", "subnet-0a1b2c3d", "sg-0a1b2c3d", "t3.large")
EC2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
TEMPLATE_ARN = f"{EC2}:launch-template/{LAUNCH.worker_launch_template}"
SUBNET_ARN = f"{EC2}:subnet/{LAUNCH.worker_subnet}"
_OPERATORS = ("StringEquals", "ArnEquals", "Bool", "ForAllValues:StringEquals")


# --- a small evaluator of the operators these policies use (an unknown one fails the test) ------------------

def _expand(text: str, context: dict) -> str | None:
    """Policy variables (${ec2:InstanceID}) filled from the request; None when one is missing (no match)."""
    names = re.findall(r"\$\{([^}]+)\}", text)
    if any(name not in context for name in names):
        return None
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(context[m.group(1)]), text)


def _holds(operator: str, key: str, expected, context: dict) -> bool:
    assert operator in _OPERATORS, f"the evaluator does not know {operator}"
    wanted = [_expand(str(v), context) for v in (expected if isinstance(expected, list) else [expected])]
    if operator.startswith("ForAllValues:"):
        return all(value in wanted for value in context.get(key, []))
    return key in context and str(context[key]) in wanted


def matches(statement: dict, action: str, resource: str, context: dict) -> bool:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return (any(fnmatch.fnmatchcase(action, a) for a in actions)
            and any((pattern := _expand(r, context)) is not None and fnmatch.fnmatchcase(resource, pattern)
                    for r in resources)
            and all(_holds(op, key, value, context)
                    for op, tests in statement.get("Condition", {}).items() for key, value in tests.items()))


def allowed(policy: dict, action: str, resource: str, context: dict) -> bool:
    statements = policy["Statement"]
    return (not any(matches(s, action, resource, context) for s in statements if s["Effect"] == "Deny")
            and any(matches(s, action, resource, context) for s in statements if s["Effect"] == "Allow"))


# --- the controller: RunInstances only from the stack's worker launch template -----------------------------

def launch_request(**changes) -> list[tuple[str, dict]]:
    """The resources of the RunInstances call the controller makes (Fleet.launch), each with its condition keys."""
    changes = dict(changes)
    template = changes.pop("template", TEMPLATE_ARN)
    common = {"ec2:LaunchTemplate": template, "ec2:IsLaunchTemplateResource": "true"}
    overridden = changes.pop("overridden", ())
    subnet = changes.pop("subnet", SUBNET_ARN)
    request = {
        "instance": (f"{EC2}:instance/*", {"aws:RequestTag/sightfleet:stack": PREFIX,
                                           "aws:RequestTag/sightfleet:role": "worker", "ec2:InstanceType": "t3.large",
                                           "ec2:MetadataHttpTokens": "required"}),
        "image": (f"arn:aws:ec2:{REGION}::image/ami-0123456789abcdef0", {"ec2:Owner": "amazon"}),
        "template": (template, {"ec2:ResourceTag/sightfleet:stack": PREFIX}),
        "subnet": (subnet, {}),
        "security-group": (f"{EC2}:security-group/{LAUNCH.worker_security_group}", {}),
        "network-interface": (f"{EC2}:network-interface/*", {"ec2:Subnet": subnet}),
        "volume": (f"{EC2}:volume/*", {"ec2:Encrypted": "true"}),
    }
    for name, keys in changes.items():   # e.g. instance={"ec2:InstanceType": "p5.48xlarge"}
        kind, keys = name.replace("_", "-"), dict(keys)
        request[kind] = (keys.pop("arn", request[kind][0]), {**request[kind][1], **keys})
    return [(arn, {**common, **keys, **({"ec2:IsLaunchTemplateResource": "false"} if kind in overridden else {})})
            for kind, (arn, keys) in request.items()]


def controller_may(request: list[tuple[str, dict]]) -> bool:
    policy = iam_policy("controller-policy", SETTINGS, ACCOUNT, LAUNCH)
    return all(allowed(policy, "ec2:RunInstances", arn, keys) for arn, keys in request)


@pytest.mark.parametrize("changes", [
    {"template": f"{EC2}:launch-template/lt-0ffffffffffffffff"},          # another launch template
    {"instance": {"ec2:InstanceType": "p5.48xlarge"}},                     # an instance type not configured
    {"instance": {"ec2:MetadataHttpTokens": "optional"}},                  # IMDSv1 allowed
    {"instance": {"aws:RequestTag/sightfleet:role": "controller"}},        # not tagged as a worker
    {"instance": {"aws:RequestTag/sightfleet:stack": "other-stack"}},      # tagged for another stack
    {"subnet": f"{EC2}:subnet/subnet-0ffffffff", "overridden": ("subnet",)},   # another subnet
    {"security_group": {"arn": f"{EC2}:security-group/sg-0ffffffff"}, "overridden": ("security-group",)},
    {"overridden": ("security-group",)},                                   # the stack's group, but given in the call
    {"image": {"ec2:Owner": "999999999999"}},                              # someone else's image
    {"overridden": ("image",)},                                            # an image other than the template's
    {"volume": {"ec2:Encrypted": "false"}},                                # an unencrypted volume
    {"network_interface": {"ec2:Subnet": f"{EC2}:subnet/subnet-0ffffffff"}},
])
def test_the_controller_launches_only_what_the_stack_worker_template_says(changes):
    assert controller_may(launch_request())   # the call Fleet.launch makes is allowed
    assert not controller_may(launch_request(**changes)), changes


def test_the_controller_passes_only_the_worker_role_to_ec2():
    policy = iam_policy("controller-policy", SETTINGS, ACCOUNT, LAUNCH)
    to_ec2 = {"iam:PassedToService": "ec2.amazonaws.com"}
    assert allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-worker", to_ec2)
    for role in ("controller", "web"):
        assert not allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-{role}", to_ec2)
    assert not allowed(policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-worker",
                       {"iam:PassedToService": "lambda.amazonaws.com"})


def test_the_template_points_the_controller_policy_at_its_own_worker_template_network_and_type():
    """The references the policy names are the worker launch template's own: else every launch would be refused."""
    template = built()
    resources = template["Resources"]
    statements = [s for p in resources["ControllerRole"]["Properties"]["Policies"]
                  for s in p["PolicyDocument"]["Statement"]]
    subs = json.dumps(statements)
    for name in ("WorkerLaunchTemplate", "WorkerSecurityGroup.GroupId", "WorkerInstanceType", "WorkerSubnet"):
        assert "${" + name + "}" in subs, name
    data = resources["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert resources["WorkerLaunchTemplate"]["Type"] == "AWS::EC2::LaunchTemplate"   # its Ref is the lt- id
    assert data["InstanceType"] == {"Ref": "WorkerInstanceType"}
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    interface = data["NetworkInterfaces"][0]
    assert interface["Groups"] == [{"Ref": "WorkerSecurityGroup"}]
    with_subnet = [s["Fn::Sub"][1] for s in _subs(statements) if isinstance(s["Fn::Sub"], list)]
    assert with_subnet and all(v == {"WorkerSubnet": interface["SubnetId"]} for v in with_subnet)


def _subs(value) -> list[dict]:
    if isinstance(value, dict):
        return [value] if "Fn::Sub" in value else [s for v in value.values() for s in _subs(v)]
    return [s for v in value for s in _subs(v)] if isinstance(value, list) else []


# --- workers: stop, terminate and tag their own instance only ----------------------------------------------

def from_instance(target: str, source: str | None, **keys) -> dict:
    tags = {"ec2:ResourceTag/sightfleet:stack": PREFIX, "ec2:ResourceTag/sightfleet:role": "worker"}
    origin = {"ec2:SourceInstanceARN": f"{EC2}:instance/{source}"} if source else {}
    return {**tags, "ec2:InstanceID": target, **origin, **keys}


@pytest.mark.parametrize("action, keys", [("ec2:TerminateInstances", {}), ("ec2:StopInstances", {}),
                                          ("ec2:CreateTags", {"aws:TagKeys": ["sightfleet:pooled-at"]})])
def test_a_worker_stops_terminates_and_tags_only_its_own_instance(action, keys):
    policy = iam_policy("worker-policy", SETTINGS, ACCOUNT)
    own, other = f"{EC2}:instance/i-0aaaaaaaaaaaaaaaa", f"{EC2}:instance/i-0bbbbbbbbbbbbbbbb"
    assert allowed(policy, action, own, from_instance("i-0aaaaaaaaaaaaaaaa", "i-0aaaaaaaaaaaaaaaa", **keys))
    # Another worker of the same stack, tagged the same: refused.
    assert not allowed(policy, action, other, from_instance("i-0bbbbbbbbbbbbbbbb", "i-0aaaaaaaaaaaaaaaa", **keys))
    # The role's credentials used anywhere but on an instance (no source instance): refused.
    assert not allowed(policy, action, own, from_instance("i-0aaaaaaaaaaaaaaaa", None, **keys))


def test_a_worker_tags_its_instance_only_with_the_pool_time():
    policy = iam_policy("worker-policy", SETTINGS, ACCOUNT)
    own = f"{EC2}:instance/i-0aaaaaaaaaaaaaaaa"
    keys = from_instance("i-0aaaaaaaaaaaaaaaa", "i-0aaaaaaaaaaaaaaaa", **{"aws:TagKeys": ["sightfleet:role"]})
    assert not allowed(policy, "ec2:CreateTags", own, keys)


# --- the template's protections -------------------------------------------------------------------------------

@pytest.mark.parametrize("bucket", ["InputBucket", "OutputBucket"])
def test_buckets_refuse_every_request_without_tls(bucket):
    resources = built()["Resources"]
    policy = resources[f"{bucket}Policy"]
    assert policy["Type"] == "AWS::S3::BucketPolicy" and policy["Properties"]["Bucket"] == {"Ref": bucket}
    document = resolved(policy["Properties"]["PolicyDocument"], {"AWS::Partition": "aws", bucket: "acme-b"})
    assert document == tls_only_policy("arn:aws:s3:::acme-b")
    deny = document["Statement"][0]
    for action, resource in [("s3:GetObject", "arn:aws:s3:::acme-b/originals/x.jpg"),
                             ("s3:ListBucket", "arn:aws:s3:::acme-b")]:
        assert matches(deny, action, resource, {"aws:SecureTransport": "false"})
        assert not matches(deny, action, resource, {"aws:SecureTransport": "true"})


def test_queues_are_encrypted_and_the_load_balancer_drops_invalid_header_fields():
    template = built()
    assert all(q.get("SqsManagedSseEnabled") is True for q in of_type(template, "AWS::SQS::Queue").values())
    balancer = template["Resources"]["LoadBalancer"]["Properties"]
    attributes = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_http_redirects_to_https_when_there_is_a_certificate_and_who_connects_is_always_chosen():
    resources = built()["Resources"]
    actions = resources["HttpListener"]["Properties"]["DefaultActions"]["Fn::If"]
    assert actions[0] == "HasCertificate"
    assert actions[1] == [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                                                                   "StatusCode": "HTTP_301"}}]
    # No default: applied from the console or scripts/deploy, the template never opens itself to the world.
    assert "Default" not in built()["Parameters"]["ClientCidr"]


def test_the_course_endpoint_is_closed_in_a_deployed_stack_unless_opted_in_and_open_locally():
    assert Settings().open_course_endpoint == 1   # locally
    for options, expected in [(DeployOptions(), "0"), (DeployOptions(open_course_endpoint=True), "1")]:
        env = env_file_of(user_data(stack_settings(SETTINGS, options, BUNDLE), "web"))
        assert env["SIGHTFLEET_OPEN_COURSE_ENDPOINT"] == expected
    # Deploy-time choices are not template parameters.
    keys = {p["ParameterKey"] for p in DeployOptions().parameters()}
    assert not {"AllowPlainHttp", "OpenCourseEndpoint"} & keys


def test_cfn_lint_checks_the_policy_references_and_iam_variables():
    """IAM's ${ec2:InstanceID} must reach IAM verbatim (${!...} inside Fn::Sub); a reference must name something."""
    from cfnlint.api import lint_all

    body = template_body(built(DeployOptions(certificate_arn="arn:aws:acm:eu-west-1:1:certificate/x")))
    errors = lambda text: [str(m) for m in lint_all(text) if str(m.rule.id)[0] in "EW"]  # noqa: E731
    assert errors(body) == []
    assert "${!ec2:InstanceID}" in body
    assert any("ec2:InstanceID" in e for e in errors(body.replace("${!ec2:InstanceID}", "${ec2:InstanceID}")))
    typo = body.replace("launch-template/${WorkerLaunchTemplate}", "launch-template/${WorkerTemplate}")
    assert any("WorkerTemplate" in e for e in errors(typo))


# --- parliament, a policy linter that works offline on its own copy of AWS's action and condition tables -------

@pytest.fixture(scope="module")
def parliament():
    # parliament 1.6.4 finds its data files with pkg_resources, which the pinned setuptools no longer ships:
    # give it importlib's answer under that name.
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: os.path.join(
            os.path.dirname(importlib.util.find_spec(package).origin), name)
        sys.modules["pkg_resources"] = shim
    import parliament as linter
    return linter


# Findings that are parliament's limits, not the policies': it wants every RunInstances statement to name all
# the resource types the action needs (the controller's grants them one statement per type, each with its own
# conditions, as AWS's own examples do), and its per-action tables leave out ec2:SourceInstanceARN, which EC2
# sets on every request made with an instance's credentials (its own EC2 condition table lists it).
def _expected(finding) -> bool:
    if finding.issue == "RESOURCE_MISMATCH":
        return all(d["action"] == "ec2:RunInstances" for d in finding.detail)
    return finding.issue == "UNKNOWN_CONDITION_FOR_ACTION" and "ec2:SourceInstanceARN" in finding.detail


@pytest.mark.parametrize("name", [p for p in POLICIES if p != "ec2-trust-policy"])
def test_parliament_finds_nothing_wrong_with_the_policies(parliament, name):
    policy = parliament.analyze_policy_string(json.dumps(iam_policy(name, SETTINGS, ACCOUNT, LAUNCH)))
    assert [f"{f.issue}: {f.detail}" for f in policy.findings if not _expected(f)] == []
    ec2 = next(s for s in parliament.iam_definition if s["prefix"] == "ec2")
    assert "ec2:SourceInstanceARN" in {c["condition"] for c in ec2["conditions"]}


def test_parliament_can_fail(parliament):
    """A misspelt condition key on the controller's launch is reported, so the test above can fail."""
    text = json.dumps(iam_policy("controller-policy", SETTINGS, ACCOUNT, LAUNCH)).replace(
        "ec2:MetadataHttpTokens", "ec2:MetadataHttpToken")
    findings = parliament.analyze_policy_string(text).findings
    assert any(f.issue == "UNKNOWN_CONDITION_FOR_ACTION" and "MetadataHttpToken" in str(f.detail) for f in findings)


# --- scripts/deploy: plain HTTP only when asked, and then for the deployer ------------------------------------

CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"


@pytest.mark.parametrize("certificate, cidr, allow, address, expected", [
    (CERTIFICATE, "", False, None, (WORLD, False)),                          # HTTPS: anyone by default
    (CERTIFICATE, "198.51.100.0/24", False, None, ("198.51.100.0/24", False)),
    ("", "", True, "34.248.10.9", ("34.248.10.9/32", True)),                # plain HTTP: the deployer only
    ("", "198.51.100.7/32", True, "34.248.10.9", ("198.51.100.7/32", True)),  # an explicit CIDR wins
    ("", WORLD, True, None, (WORLD, True)),                                  # the world, when asked twice
])
def test_who_may_connect(certificate, cidr, allow, address, expected):
    exposure = decide(certificate, cidr, allow, address)
    assert (exposure.client_cidr, exposure.plain_http) == expected
    assert exposure.client_cidr in exposure.notice and ("PLAIN HTTP" in exposure.notice) == exposure.plain_http


@pytest.mark.parametrize("certificate, cidr, allow, address, reason", [
    ("", "", False, "34.248.10.9", "--allow-plain-http"),      # no certificate, not asked for
    ("", WORLD, False, None, "--allow-plain-http"),            # even to a CIDR
    ("", "", True, "192.168.1.20", "is private"),              # behind a NAT: the balancer would see another one
    ("", "", True, "127.0.0.1", "is private"),
    ("", "", True, None, "no route"),
    (CERTIFICATE, "10.0.0.0/33", False, None, "not an IPv4 network"),
])
def test_what_is_refused(certificate, cidr, allow, address, reason):
    with pytest.raises(Refused, match=reason):
        decide(certificate, cidr, allow, address)


def test_own_address_is_the_source_address_of_the_route_and_sends_nothing():
    assert own_address(("127.0.0.1", 9)) == "127.0.0.1"
    found = own_address()
    assert found is None or re.fullmatch(r"\d+(\.\d+){3}", found)


def test_a_deploy_without_a_certificate_is_refused_before_any_call():
    """Against an endpoint that answers nothing: the refusal comes first, with what to pass instead."""
    refused = run_script("deploy", "http://127.0.0.1:9", "acme-plain")
    assert refused.returncode == 2 and "refusing to deploy" in refused.stderr and "--allow-plain-http" in refused.stderr
    asked = run_script("deploy", "http://127.0.0.1:9", "acme-plain", "--allow-plain-http", "--client-cidr",
                       "198.51.100.7/32", "--timeout-min", "0.1")
    assert "PLAIN HTTP, open to 198.51.100.7/32" in asked.stderr and "refusing" not in asked.stderr
    assert asked.returncode == 1   # it went on, to an endpoint that does not answer


# --- the code bundle an instance installs at boot is the one scripts/deploy named -------------------------------

def _bundle(tmp_path, marker) -> bytes:
    """A bundle whose install.sh leaves a mark: what runs as root on the instance."""
    import io
    import tarfile
    script = f"#!/bin/bash\ntouch {marker}\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("ami/install.sh")
        info.size = len(script)
        tar.addfile(info, io.BytesIO(script))
    return raw.getvalue()


def _boot(tmp_path, uri: str, served: bytes):
    """The boot script's install step, with an `aws` that serves `served` for any s3 cp."""
    import subprocess
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "served.tar.gz").write_bytes(served)
    aws = bin_dir / "aws"
    aws.write_text(f'#!/bin/bash\n[ "$1 $2" = "s3 cp" ] && cp {tmp_path / "served.tar.gz"} "${{@: -1}}"\n')
    aws.chmod(0o755)
    script = user_data(Settings(prefix=PREFIX, code_bundle=uri))
    install_step = script.split("install -d -m 0755 /etc/sightfleet")[0]   # before it writes /etc
    return subprocess.run(["bash", "-c", install_step], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


def test_an_instance_installs_the_code_bundle_only_if_it_has_the_named_hash(tmp_path):
    from sightfleet.deploy.templates import TemplateError
    from sightfleet.deploy.bundle import bundle_key
    if os.path.exists("/opt/sightfleet/venv/bin/python"):
        pytest.skip("a baked image is installed here: the boot script skips the bundle")
    marker = tmp_path / "installed"
    genuine = _bundle(tmp_path, marker)
    uri = f"s3://{PREFIX}-artefacts/{bundle_key(genuine)}"
    tampered = genuine + b"\0"   # other bytes under the same name
    refused = _boot(tmp_path, uri, tampered)
    assert refused.returncode == 1 and "does not have the SHA-256" in refused.stderr and not marker.exists()
    accepted = _boot(tmp_path, uri, genuine)
    assert accepted.returncode == 0, accepted.stderr
    assert marker.exists()
    with pytest.raises(TemplateError, match="sha256"):   # a bundle whose name promises no hash is not rendered
        user_data(Settings(prefix=PREFIX, code_bundle=f"s3://{PREFIX}-artefacts/bundles/latest.tar.gz"))
