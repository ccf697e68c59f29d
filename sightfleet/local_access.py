"""Who may use the local AWS endpoint: the per-run key pair and control token, and how they reach people.

`scripts/run` makes a fresh `LocalAccess` at every start. The endpoint accepts only requests signed
(SigV4) with that key pair and only control requests (`/moto-api/`, `/_sightfleet/`) that carry the
control token (devstack/endpoint_guard.py); the stack's children get the pair in their environment,
and the user's own tools get it from `.run/local-aws.env`, written mode 0600 in a 0700 folder:

    set -a; . .run/local-aws.env; set +a

Each command-line tool of the project calls `use_local_aws_env()` first: with no credentials and no
other endpoint in its environment, it talks to the running local stack without being told how.
See docs/security-local.md.
"""
from __future__ import annotations

import fcntl
import hmac
import logging
import os
import secrets
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import MutableMapping
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".run"
DEFAULT_ENV_FILE = RUN_DIR / "local-aws.env"
# Where the stack writes the file and the tools read it ("": DEFAULT_ENV_FILE); tests point it elsewhere.
ENV_FILE_VAR = "SIGHTFLEET_LOCAL_AWS_ENV"
# The endpoint's own environment: what it accepts. Set for `scripts/run` too, they pin the pair and token
# instead of drawing new ones (a test harness does, so that one process can speak to all its endpoints).
ACCESS_KEY_VAR = "SIGHTFLEET_LOCAL_AWS_ACCESS_KEY_ID"
SECRET_KEY_VAR = "SIGHTFLEET_LOCAL_AWS_SECRET_ACCESS_KEY"
CONTROL_TOKEN_VAR = "SIGHTFLEET_LOCAL_AWS_CONTROL_TOKEN"
CONTROL_HEADER = "X-Sightfleet-Control"
# What the user's tools take from the file; the credentials are the ones a request without them lacks.
CLIENT_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
_CHOSEN_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE")
_KEY_ID_CHARS = string.ascii_uppercase + string.digits
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
log = logging.getLogger(__name__)


class AccessError(ValueError):
    """The endpoint's access is half configured (a key id without its secret, say)."""


@dataclass(frozen=True)
class LocalAccess:
    """One run's key pair (SigV4, as AWS's: the key id is not secret, the secret key never travels) and control token."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    control_token: str = field(repr=False)

    @classmethod
    def generate(cls) -> "LocalAccess":
        """A fresh pair in AWS's shapes (20-character key id, 40-character secret) and a 256-bit token."""
        key_id = "AKIA" + "".join(secrets.choice(_KEY_ID_CHARS) for _ in range(16))
        return cls(key_id, secrets.token_urlsafe(30), secrets.token_urlsafe(32))

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | dict) -> "LocalAccess | None":
        """The access an endpoint (or a pinned stack) is given in its environment; None when none is."""
        values = [environ.get(name, "") for name in (ACCESS_KEY_VAR, SECRET_KEY_VAR, CONTROL_TOKEN_VAR)]
        if not any(values):
            return None
        if not all(values):
            raise AccessError(f"set all of {ACCESS_KEY_VAR}, {SECRET_KEY_VAR} and {CONTROL_TOKEN_VAR}, or none")
        return cls(*values)

    def endpoint_env(self) -> dict[str, str]:
        """The environment that tells an endpoint what to accept."""
        return {ACCESS_KEY_VAR: self.access_key_id, SECRET_KEY_VAR: self.secret_access_key,
                CONTROL_TOKEN_VAR: self.control_token}

    def client_env(self) -> dict[str, str]:
        """The environment that makes boto3 sign with this pair."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}

    def control_headers(self) -> dict[str, str]:
        """The header a control request (state save or restore, /moto-api/) carries."""
        return {CONTROL_HEADER: self.control_token}

    def is_control_token(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self.control_token.encode())


def env_file_path(environ: MutableMapping[str, str] | dict) -> Path:
    """Where `.run/local-aws.env` is (read before Settings exist: boto3 takes credentials from the environment)."""
    return Path(environ.get(ENV_FILE_VAR) or DEFAULT_ENV_FILE)


def env_file_text(endpoint_url: str, region: str, access: LocalAccess) -> str:
    """The file's lines: the four a tool needs, and the control token for /moto-api/ by hand."""
    values = {"AWS_ENDPOINT_URL": endpoint_url, **access.client_env(), "AWS_DEFAULT_REGION": region,
              CONTROL_TOKEN_VAR: access.control_token}
    header = ("# The local AWS endpoint of scripts/run and its credentials for this run (new at every start).\n"
              "# For your own tools: set -a; . .run/local-aws.env; set +a\n")
    return header + "".join(f"{name}={value}\n" for name, value in values.items())


def write_env_file(path: Path, endpoint_url: str, region: str, access: LocalAccess) -> None:
    """Write the file mode 0600 (in a private folder), replacing the previous run's at once."""
    private_dir(path.parent)
    write_private(path, env_file_text(endpoint_url, region, access).encode())


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=value lines of an env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def use_local_aws_env(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """For command-line tools: fill in the running local stack's endpoint and credentials from its env file.

    Only when the environment chose neither credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE) nor another
    endpoint, and only while the stack that wrote the file still runs (it holds its lock): a file left
    by a stopped stack never sends a tool meant for AWS to a dead local port. Returns the file it used.
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in _CHOSEN_CREDENTIALS):
        return None
    path = env_file_path(environ)
    try:
        values = read_env_file(path)
    except FileNotFoundError:
        return None
    endpoint = values.get("AWS_ENDPOINT_URL", "")
    if environ.get("AWS_ENDPOINT_URL") not in (None, "", endpoint) or not stack_running(endpoint):
        return None
    for name in CLIENT_VARS:
        if name in values and (name != "AWS_DEFAULT_REGION" or not environ.get(name)):
            environ[name] = values[name]
    log.info("using the running local stack's endpoint %s and credentials from %s", endpoint, path)
    return path


def lock_file(aws_port: int) -> Path:
    """The lock a running stack holds for its local AWS port."""
    return RUN_DIR / f"stack-{aws_port}.lock"


def stack_running(endpoint_url: str) -> bool:
    """Whether a stack runs on this endpoint's port: its lock is held."""
    port = urlsplit(endpoint_url).port
    if port is None:
        return False
    try:
        with open(lock_file(port)) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def private_dir(path: Path) -> Path:
    """Make path a folder only its owner can enter (made so, or made so again if it was not)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a file mode 0600 and rename it into place, so no reader ever sees it half written or open to others."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def make_private(root: Path) -> int:
    """Close a folder made by an older version to everyone but its owner: group's and others' bits off.

    (0755 folders become 0700, 0644 files 0600; the owner's own bits stay.) Returns how many entries it
    changed. The snapshots hold every photo and password hash.
    """
    if not root.is_dir():
        return 0
    changed = 0
    for folder, _, files in os.walk(root):
        for path in [folder] + [os.path.join(folder, name) for name in files]:
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(path, stat.S_IMODE(mode) & 0o700)
                changed += 1
    return changed
