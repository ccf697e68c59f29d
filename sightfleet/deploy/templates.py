"""Renders the files under ami/: the user data that boots an instance, and the IAM policy documents.

Placeholders are written `{{name}}` (bash and JSON both use `$` and `{}` themselves); rendering
is strict: an unknown placeholder or a missing value is an error, never an empty string.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sightfleet.config import Settings, env_var_names
from sightfleet.deploy.bundle import bundle_digest

AMI_DIR = Path(__file__).resolve().parents[2] / "ami"
ROLES = ("worker", "web", "controller")
# code-bundle-policy goes to every role: instances of a stock image fetch the code scripts/deploy uploaded.
POLICIES = ("worker-policy", "web-policy", "controller-policy", "code-bundle-policy", "ec2-trust-policy")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_CREDENTIAL = re.compile(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|SECURITY_TOKEN)"
                         r"|\b(AKIA|ASIA)[A-Z0-9]{16}\b", re.IGNORECASE)
# Not exported: an instance finds its own id; the local port is local-only;
# region and endpoint travel under their AWS names.
# The session key signs web sessions and the credentials key seals access-key secrets: only the web tier
# holds them (read from Secrets Manager), never user data or another role.
_NOT_EXPORTED = frozenset({"instance_id", "local_aws_port", "region", "endpoint_url", "secret_key",
                           "credentials_key"})
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f$`\\\"]")


class TemplateError(ValueError):
    """A template cannot be rendered safely."""


@dataclass(frozen=True)
class WorkerLaunch:
    """What the controller's policy lets it launch: the stack's worker launch template (its id), subnet,
    security group (ids) and instance type; in a CloudFormation template, references to them."""

    worker_launch_template: str
    worker_subnet: str
    worker_security_group: str
    worker_instance_type: str


def render(text: str, values: dict[str, str]) -> str:
    """Replace every {{name}} in text; every name must have a value."""
    missing = sorted({name for name in _PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise TemplateError(f"no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)


def instance_environment(settings: Settings) -> dict[str, str]:
    """The stack's settings as the environment variables an instance's service reads."""
    env = {}
    for spec in fields(settings):
        value = getattr(settings, spec.name)
        if spec.name not in _NOT_EXPORTED and value is not None:
            env[env_var_names(spec.name)[0]] = str(value)
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = settings.region
    if settings.endpoint_url:
        env["AWS_ENDPOINT_URL"] = settings.endpoint_url
    return env


def environment_file(env: dict[str, str]) -> str:
    """systemd EnvironmentFile lines; values that quoting could not carry verbatim are refused."""
    lines = []
    for key, value in sorted(env.items()):
        if _UNSAFE_VALUE.search(value):
            raise TemplateError(f"{key} holds a control character, quote, backslash, $ or backquote")
        lines.append(f'{key}="{value}"')
    return "\n".join(lines)


def user_data(settings: Settings, role: str = "worker") -> str:
    """The boot script of one instance of a role: writes its settings and starts its unit."""
    if role not in ROLES:
        raise TemplateError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if _UNSAFE_VALUE.search(settings.code_bundle) or "'" in settings.code_bundle:
        raise TemplateError("SIGHTFLEET_CODE_BUNDLE holds a quote, control character, backslash, $ or backquote")
    digest = bundle_digest(settings.code_bundle) or ""
    if settings.code_bundle and not digest:   # the instance checks the bytes it installs against this
        raise TemplateError("SIGHTFLEET_CODE_BUNDLE must be named .../sightfleet-<sha256>.tar.gz (scripts/deploy's)")
    text = render((AMI_DIR / "user-data.sh.tpl").read_text(), {
        "role": role, "environment": environment_file(instance_environment(settings)),
        "code_bundle": settings.code_bundle, "code_bundle_digest": digest})
    if _CREDENTIAL.search(text):
        raise TemplateError("user data would carry a credential; instances get theirs from the instance profile")
    return text


def iam_policy(name: str, settings: Settings, account_id: str, launch: WorkerLaunch | None = None) -> dict:
    """One of the IAM policy documents under ami/iam/, for this stack and account (the controller's needs launch)."""
    if name not in POLICIES:
        raise TemplateError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
    names = settings.names
    text = render((AMI_DIR / "iam" / f"{name}.json").read_text(), {
        "prefix": names.prefix, "region": settings.region, "account_id": account_id,
        "input_bucket": names.input_bucket, "output_bucket": names.output_bucket,
        "artefacts_bucket": names.artefacts_bucket, **(asdict(launch) if launch else {})})
    return json.loads(text)
