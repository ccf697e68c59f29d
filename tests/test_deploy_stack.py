"""scripts/deploy and scripts/destroy against the local endpoint: a stack made, used through the project's own
modules, left alone by a second deploy, checked against what scripts/provision makes, and removed entirely."""
from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest
from botocore.exceptions import ClientError

from sightfleet.deploy.templates import user_data
from sightfleet.aws.accounts import AccountsTable
from sightfleet.aws.dynamodb import FleetTable, ResultsTable
from sightfleet.aws.ec2 import Fleet
from sightfleet.aws.s3 import Bucket
from sightfleet.aws.sqs import Queue
from sightfleet.config import Settings
from sightfleet.contracts import Job, new_image_id, queued_result, utc_now
from sightfleet.errors import NotFound
from sightfleet.deploy.cloudformation import leftovers
from sightfleet.aws.s3 import over_tls, tls_only_policy
from sightfleet.deploy.template import SESSION_KEY_LENGTH
from sightfleet.interfaces import HEARTBEAT_KIND
from sightfleet.resources import provision
from tests.support import AWS_TEST_ENV, REPO, unique_prefix
from web_tier.accounts import Accounts

pytestmark = pytest.mark.slow  # deploy scripts run


# No certificate on a local endpoint: plain HTTP, asked for, to one address (tests/test_deploy_security.py).
PLAIN = ("--allow-plain-http", "--client-cidr", "198.51.100.7/32")


def run(script: str, endpoint: str, prefix: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGHTFLEET_")}
    env.update(AWS_ENDPOINT_URL=endpoint, SIGHTFLEET_PREFIX=prefix, **AWS_TEST_ENV)
    return subprocess.run([str(REPO / "scripts" / script), *args], capture_output=True, text=True, timeout=120, env=env)


def aws(endpoint: str, service: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(scope="module")
def deployed(moto_server):
    """One stack deployed with scripts/deploy; destroyed at the end if a test left it."""
    prefix = unique_prefix("d")
    first = run("deploy", moto_server, prefix, *PLAIN)
    yield prefix, first
    if leftovers(Settings(prefix=prefix, endpoint_url=moto_server)):
        run("destroy", moto_server, prefix)


def test_deploy_creates_the_stack_and_prints_the_url(deployed, moto_server):
    prefix, first = deployed
    assert first.returncode == 0, first.stderr
    stack = aws(moto_server, "cloudformation").describe_stacks(StackName=prefix)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert first.stdout.strip() == outputs["WebUrl"] and outputs["WebUrl"].startswith("http://")
    assert "every resource of stack" in first.stderr and "CREATE_COMPLETE" in first.stderr  # events as they happen
    names = Settings(prefix=prefix).names
    assert outputs["RequestQueueUrl"].endswith("/" + names.request_queue)
    assert (outputs["InputBucket"], outputs["ResultsTable"]) == (names.input_bucket, names.results_table)


def test_the_tls_only_bucket_policy_refuses_plain_http(moto_server):
    """moto evaluates bucket policies on object requests: over its plain-HTTP endpoint, the policy refuses them."""
    s3 = aws(moto_server, "s3")
    bucket = unique_prefix("tls")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="originals/a.jpg", Body=b"x")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(f"arn:aws:s3:::{bucket}")))
    for call in (lambda: s3.get_object(Bucket=bucket, Key="originals/a.jpg"),
                 lambda: s3.put_object(Bucket=bucket, Key="originals/b.jpg", Body=b"y")):
        with pytest.raises(ClientError, match="403"):
            call()
    s3.delete_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="originals/a.jpg")["Body"].read() == b"x"
    # So ensure_bucket puts it where S3 is reached over TLS only (scripts/provision, the artefacts bucket).
    assert over_tls(Settings()) and over_tls(Settings(endpoint_url="https://s3.example.test"))
    assert not over_tls(Settings(endpoint_url=moto_server))


def test_every_resource_works_through_the_projects_modules(deployed, moto_server):
    prefix, _ = deployed
    settings = Settings(prefix=prefix, endpoint_url=moto_server)
    names = settings.names
    requests = Queue(settings, names.request_queue)
    requests.send('{"job": 1}')
    (message,) = requests.receive(wait_s=1)
    assert message.body == '{"job": 1}'
    requests.delete(message.receipt)
    outputs = Bucket(settings, names.output_bucket)
    outputs.put("thumbnails/x.jpg", b"\xff\xd8bytes", "image/jpeg")
    assert outputs.get("thumbnails/x.jpg") == b"\xff\xd8bytes"
    results = ResultsTable(settings)
    job = Job(id=new_image_id(), album="a", filename="x.jpg", content_type="image/jpeg", submitted_at=utc_now(),
              size=3, inline_b64="eHl6")
    results.create(queued_result(job))
    assert results.get(job.id)["status"] == "QUEUED" and results.page()[0][0]["id"] == job.id
    FleetTable(settings).put(HEARTBEAT_KIND, "i-1", {"state": "idle"})
    assert FleetTable(settings).all(HEARTBEAT_KIND) == [{"state": "idle"}]
    # A worker as the controller launches it: from the stack's launch template, with the stack's image.
    stack_settings = settings.with_changes(launch_template=names.role_name("worker"))
    (instance_id,) = Fleet(stack_settings).launch(1, user_data(stack_settings))
    ec2 = aws(moto_server, "ec2")
    version = ec2.describe_launch_template_versions(LaunchTemplateName=names.role_name("worker"))["LaunchTemplateVersions"][0]
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert instance["ImageId"] == version["LaunchTemplateData"]["ImageId"].strip() != ""
    assert [i.id for i in Fleet(settings).instances()] == [instance_id]
    # Accounts, and the session key the stack generated, as a web instance reads it.
    accounts = Accounts(AccountsTable(settings))
    _, issued = accounts.create("operator", admin=True)
    assert accounts.by_key(issued.key).admin
    # moto's CloudFormation passes over AWS::SecretsManager::Secret, so the generated secret is made here the way
    # CloudFormation would (test_deploy_template checks the resource); the web tier reads it as on AWS.
    from web_tier import session_key
    deployed_web = settings.with_changes(secret_key_secret=names.session_secret)
    with pytest.raises(NotFound):
        session_key(deployed_web)  # no secret: the web tier refuses to start rather than sign with a random key
    generated = aws(moto_server, "secretsmanager").get_random_password(
        PasswordLength=SESSION_KEY_LENGTH, ExcludePunctuation=True)["RandomPassword"]
    aws(moto_server, "secretsmanager").create_secret(Name=names.session_secret, SecretString=generated)
    assert session_key(deployed_web) == generated


def test_the_stack_makes_what_provision_makes(deployed, moto_server):
    """One source of names and shapes: the stack's queues and tables equal scripts/provision's, name aside."""
    prefix, _ = deployed
    other = Settings(prefix=unique_prefix("p"), endpoint_url=moto_server)
    provision(other)
    sqs, ddb = aws(moto_server, "sqs"), aws(moto_server, "dynamodb")

    def queue_shape(settings: Settings, name: str) -> dict:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        keep = ("VisibilityTimeout", "ReceiveMessageWaitTimeSeconds", "MessageRetentionPeriod", "MaximumMessageSize")
        shape = {k: attrs.get(k) for k in keep}
        if "RedrivePolicy" in attrs:
            redrive = json.loads(attrs["RedrivePolicy"])
            shape["redrive"] = (redrive["deadLetterTargetArn"].rsplit(":", 1)[1].replace(settings.prefix, "P"),
                                int(redrive["maxReceiveCount"]))
        return shape

    def table_shape(name: str) -> dict:
        table = ddb.describe_table(TableName=name)["Table"]
        indexes = sorted((i["IndexName"], json.dumps(i["KeySchema"]), i["Projection"]["ProjectionType"])
                         for i in table.get("GlobalSecondaryIndexes", []))
        return {"keys": table["KeySchema"], "attributes": sorted(a["AttributeName"] for a in table["AttributeDefinitions"]),
                "indexes": indexes}

    stack = Settings(prefix=prefix, endpoint_url=moto_server)
    for attr in ("request_queue", "dead_letter_queue", "response_queue"):
        assert queue_shape(stack, getattr(stack.names, attr)) == queue_shape(other, getattr(other.names, attr)), attr
    for attr in ("results_table", "fleet_table", "accounts_table"):
        assert table_shape(getattr(stack.names, attr)) == table_shape(getattr(other.names, attr)), attr
    # moto ignores the template's TTL, so compare it with what ensure_tables switched on.
    ttl = ddb.describe_time_to_live(TableName=other.names.fleet_table)["TimeToLiveDescription"]["AttributeName"]
    template = json.loads(run("deploy", moto_server, prefix, "--template").stdout)
    assert template["Resources"]["FleetTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"] == ttl


def test_a_second_deploy_changes_nothing_and_says_so(deployed, moto_server):
    prefix, _ = deployed
    cfn = aws(moto_server, "cloudformation")
    events = len(cfn.describe_stack_events(StackName=prefix)["StackEvents"])
    again = run("deploy", moto_server, prefix, *PLAIN)
    assert again.returncode == 0, again.stderr
    assert "no changes" in again.stderr
    assert cfn.describe_stacks(StackName=prefix)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert len(cfn.describe_stack_events(StackName=prefix)["StackEvents"]) == events


def test_a_resource_gone_behind_the_stacks_back_fails_the_deploy_with_its_name(deployed, moto_server):
    prefix, _ = deployed
    aws(moto_server, "dynamodb").delete_table(TableName=Settings(prefix=prefix).names.fleet_table)
    broken = run("deploy", moto_server, prefix, *PLAIN)
    assert broken.returncode == 1 and "fleet table" in broken.stderr, broken.stderr
    provision(Settings(prefix=prefix, endpoint_url=moto_server))  # put it back (moto cannot delete a stack without it)


def test_destroy_leaves_nothing_of_the_prefix(deployed, moto_server):
    prefix, _ = deployed
    settings = Settings(prefix=prefix, endpoint_url=moto_server)
    assert Fleet(settings).instances()  # the worker launched above, outside the stack
    gone = run("destroy", moto_server, prefix)
    assert gone.returncode == 0, gone.stderr
    assert leftovers(settings) == []
    assert "nothing of prefix" in gone.stderr
    ec2 = aws(moto_server, "ec2")
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:sightfleet:stack", "Values": [prefix]}])["Reservations"]
    assert {i["State"]["Name"] for r in reservations for i in r["Instances"]} <= {"terminated"}
    # Run again with nothing there: it says so and succeeds.
    again = run("destroy", moto_server, prefix)
    assert again.returncode == 0 and "there is no stack" in again.stderr, again.stderr


def test_deploy_to_an_endpoint_that_does_not_answer_fails_with_a_reason():
    failed = run("deploy", "http://127.0.0.1:9", unique_prefix("d"), *PLAIN, "--timeout-min", "1")
    assert failed.returncode == 1 and "deploy failed" in failed.stderr, failed.stderr
