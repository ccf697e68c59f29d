"""The per-run access to the local AWS endpoint: `.run/local-aws.env`, the tools that read it, and `.run/`'s privacy."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sightfleet.local_access import (ACCESS_KEY_VAR, CONTROL_TOKEN_VAR, ENV_FILE_VAR, RUN_DIR, SECRET_KEY_VAR,
                                     LocalAccess, make_private, read_env_file, use_local_aws_env, write_env_file)
from tests.support import (AWS_TEST_ENV, REPO, TEST_ACCESS, free_port, running_stack_env_file, stack_child_pid,
                           stack_state_dir, start_stack)

ACCESS = LocalAccess.generate()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_env_file_is_private_and_sources_in_a_shell(tmp_path):
    path = tmp_path / "run" / "local-aws.env"
    write_env_file(path, "http://127.0.0.1:4566", "us-east-1", ACCESS)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    shown = subprocess.run(["bash", "-c", f'set -a; . "{path}"; set +a; env'], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"]}, check=True).stdout.splitlines()
    expected = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_ACCESS_KEY_ID": ACCESS.access_key_id,
                "AWS_SECRET_ACCESS_KEY": ACCESS.secret_access_key, "AWS_DEFAULT_REGION": "us-east-1"}
    assert {f"{name}={value}" for name, value in expected.items()} <= set(shown)
    assert read_env_file(path) == {**expected, CONTROL_TOKEN_VAR: ACCESS.control_token}
    write_env_file(path, "http://127.0.0.1:4567", "us-east-1", LocalAccess.generate())   # the next run's
    assert mode(path) == 0o600 and read_env_file(path)["AWS_ENDPOINT_URL"].endswith(":4567")


def test_generated_pairs_are_fresh_and_in_aws_shapes():
    pairs = {LocalAccess.generate() for _ in range(20)}
    assert len({p.access_key_id for p in pairs}) == len({p.secret_access_key for p in pairs}) == 20
    assert all(len(p.access_key_id) == 20 and p.access_key_id.startswith("AKIA") and len(p.secret_access_key) == 40
               for p in pairs)
    assert ACCESS.secret_access_key not in repr(ACCESS) and ACCESS.control_token not in repr(ACCESS)


def test_half_an_access_is_an_error():
    from sightfleet.local_access import AccessError
    assert LocalAccess.from_environ({}) is None
    assert LocalAccess.from_environ(ACCESS.endpoint_env()) == ACCESS
    with pytest.raises(AccessError):
        LocalAccess.from_environ({ACCESS_KEY_VAR: "AKIA", SECRET_KEY_VAR: "s"})


def test_an_open_folder_left_by_an_older_version_is_closed(tmp_path):
    root = tmp_path / "aws-4566"
    (root / "blobs").mkdir(parents=True)
    for path in (root / "state.json", root / "blobs" / "s3-abc"):
        path.write_bytes(b"photo")
        path.chmod(0o644)
    root.chmod(0o755)
    (root / "blobs").chmod(0o755)
    (root / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "tool").chmod(0o755)
    assert make_private(root) == 5
    assert {mode(p) for p in (root, root / "blobs", root / "tool")} == {0o700}   # an executable stays one
    assert {mode(p) for p in (root / "state.json", root / "blobs" / "s3-abc")} == {0o600}
    assert make_private(root) == 0 and make_private(tmp_path / "absent") == 0


@pytest.fixture
def running_stack_file(tmp_path):
    """An env file of a stack on a free port whose lock is held (as a running stack holds it)."""
    port = free_port()
    with running_stack_env_file(tmp_path / "local-aws.env", f"http://127.0.0.1:{port}") as path:
        yield path, port


FILLED = {"AWS_ACCESS_KEY_ID": TEST_ACCESS.access_key_id, "AWS_SECRET_ACCESS_KEY": TEST_ACCESS.secret_access_key}
CHOICES = {
    # what the environment says: (its variables, whether the file is used)
    "nothing": ({}, True),
    "the same endpoint, no credentials": ({"AWS_ENDPOINT_URL": "SAME"}, True),
    "its own region": ({"AWS_DEFAULT_REGION": "eu-west-1"}, True),
    "credentials of its own": ({"AWS_ACCESS_KEY_ID": "AKIAOWN", "AWS_SECRET_ACCESS_KEY": "own"}, False),
    "a profile": ({"AWS_PROFILE": "work"}, False),
    "another endpoint": ({"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, False),
}


@pytest.mark.parametrize("what", CHOICES)
def test_tools_read_the_file_only_when_told_nothing_else(running_stack_file, what):
    path, port = running_stack_file
    given, used = CHOICES[what]
    environ = {ENV_FILE_VAR: str(path), **{k: v.replace("SAME", f"http://127.0.0.1:{port}") for k, v in given.items()}}
    before = dict(environ)
    assert use_local_aws_env(environ) == (path if used else None)
    if used:
        assert {k: environ[k] for k in FILLED} == FILLED and environ["AWS_ENDPOINT_URL"].endswith(f":{port}")
        assert environ["AWS_DEFAULT_REGION"] == given.get("AWS_DEFAULT_REGION", "us-east-1")
        assert CONTROL_TOKEN_VAR not in environ   # a tool has no use for the control token
    else:
        assert environ == before


def test_a_file_left_by_a_stopped_stack_or_none_is_ignored(tmp_path):
    path = tmp_path / "local-aws.env"
    write_env_file(path, f"http://127.0.0.1:{free_port()}", "us-east-1", ACCESS)   # nobody holds its lock
    for environ in ({ENV_FILE_VAR: str(path)}, {ENV_FILE_VAR: str(tmp_path / "absent.env")}):
        assert use_local_aws_env(environ) is None and list(environ) == [ENV_FILE_VAR]


def _tool(argv: list[str], env_file: Path, prefix: str, **extra: str) -> subprocess.CompletedProcess:
    """A command-line tool of the project run as a user would, with no AWS variable set unless given."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("AWS_") and name not in (ACCESS_KEY_VAR, SECRET_KEY_VAR, CONTROL_TOKEN_VAR)}
    env.update({ENV_FILE_VAR: str(env_file), "SIGHTFLEET_PREFIX": prefix, "PYTHONPATH": str(REPO), **extra})
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _environ_of(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


@pytest.mark.e2e
def test_a_started_stack_draws_its_own_pair_keeps_run_private_and_its_tools_find_it(tmp_path):
    stack = start_stack(tmp_path, **{ACCESS_KEY_VAR: "", SECRET_KEY_VAR: "", CONTROL_TOKEN_VAR: ""})
    try:
        file = stack.aws_env_file
        values = read_env_file(file)
        assert values["AWS_ENDPOINT_URL"] == stack.aws_url and values["AWS_ACCESS_KEY_ID"] != TEST_ACCESS.access_key_id
        assert f"set -a; . {file}; set +a" in stack.log_text()
        assert mode(file) == 0o600 and mode(file.parent) == 0o700 and mode(RUN_DIR) == 0o700
        web = _environ_of(stack_child_pid(stack, "-m", "gunicorn"))
        endpoint = _environ_of(stack_child_pid(stack, "-m", "devstack.emulator"))
        assert web["AWS_ACCESS_KEY_ID"] == values["AWS_ACCESS_KEY_ID"] and CONTROL_TOKEN_VAR not in web
        assert endpoint[CONTROL_TOKEN_VAR] == values[CONTROL_TOKEN_VAR]
        made = _tool(["-m", "web_tier.accounts", "create", "reader"], file, stack.prefix)
        assert made.returncode == 0 and made.stdout.strip(), made.stderr
        assert "from " + str(file) in made.stderr
        assert _tool(["-m", "sightfleet.provision"], file, stack.prefix).returncode == 0
        # Credentials given explicitly win over the file: the harness's pair is not this run's, and is refused.
        explicit = _tool(["-m", "web_tier.accounts", "create", "other"], file, stack.prefix, **AWS_TEST_ENV,
                         AWS_ENDPOINT_URL=stack.aws_url)
        assert explicit.returncode == 2 and "InvalidAccessKeyId" in explicit.stderr, explicit.stderr
    finally:
        assert stack.stop() == 0
    state = stack_state_dir(stack)
    snapshot = [state, *state.rglob("*")]
    assert snapshot and all(mode(p) == (0o700 if p.is_dir() else 0o600) for p in snapshot), \
        {str(p): oct(mode(p)) for p in snapshot}
    assert mode(state.with_name(state.name + ".session-key")) == 0o600
