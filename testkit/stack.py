"""The local AWS endpoint and the whole local stack, started for tests and benchmarks as `scripts/run` starts them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from devstack.endpoint_guard import READY_PATH
from devstack.stack import answers, moto_command
from sightfleet.accounts import Accounts
from sightfleet.local_access import ENV_FILE_VAR
from testkit.access import AWS_TEST_ENV, use_test_access
from testkit.photos import REPO
from testkit.procs import alive, descendants, free_port, unique_prefix, wait_for
from testkit.signin import bearer, sign_in_url

def start_moto(command=moto_command) -> tuple[subprocess.Popen, str]:
    """The local AWS endpoint (moto, as scripts/run serves it, unless `command(port)` says otherwise).

    Also gives this process the run's test credentials (use_test_access).
    """
    use_test_access()
    port = free_port()
    proc = subprocess.Popen(command(port), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(url + READY_PATH), 30, what="moto server")
    return proc, url


@dataclass
class LocalStack:
    """A running `python -m devstack.stack`, as `scripts/run` starts it."""

    proc: subprocess.Popen
    web_url: str
    aws_url: str
    prefix: str
    log_path: Path
    env: dict = field(default_factory=dict)
    seen_pids: set = field(default_factory=set)
    api_key: str = ""  # the local admin's, as the stack printed it on its first start

    @property
    def headers(self) -> dict:
        """Authorization for requests to this stack's web tier, as its admin."""
        return bearer(self.api_key)

    @property
    def aws_env_file(self) -> Path:
        """The stack's `.run/local-aws.env` (kept beside its log, not in the checkout's .run/)."""
        return Path(self.env[ENV_FILE_VAR])

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET path on the web tier as the stack's admin."""
        return requests.get(self.web_url + path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def accounts(self) -> Accounts:
        """The stack's accounts, on its local endpoint."""
        from sightfleet.aws.accounts import AccountsTable
        from sightfleet.config import Settings
        for key, value in AWS_TEST_ENV.items():
            os.environ.setdefault(key, value)
        return Accounts(AccountsTable(Settings(endpoint_url=self.aws_url, prefix=self.prefix)))

    def sign_in_link(self, name: str = "admin", next_path: str = "/") -> str:
        """A one-time link that signs a browser in as `name` (the stack's admin by default) and opens next_path."""
        return sign_in_url(self.web_url, self.accounts(), name, next_path)

    def post(self, path: str, **kwargs) -> requests.Response:
        """POST to path on the web tier as the stack's admin."""
        return requests.post(self.web_url + path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def track(self) -> set[int]:
        """Remember every process of the tree seen so far (workers come and go)."""
        self.seen_pids |= descendants(self.proc.pid)
        return self.seen_pids

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 90) -> int:
        self.track()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)


def start_stack(log_dir: Path, **env_overrides: str) -> LocalStack:
    """Start the stack through the same entry point as scripts/run, on free ports, and wait for it."""
    prefix = unique_prefix("e2e")
    web_port, aws_port = free_port(), free_port()
    use_test_access()   # the stack takes the harness's key pair (its pins) rather than drawing its own
    # Each test stack persists its endpoint and writes its local-aws.env beside its log, not in the checkout's .run/.
    env = {**os.environ, "PORT": str(web_port), "SIGHTFLEET_LOCAL_AWS_PORT": str(aws_port),
           "SIGHTFLEET_PREFIX": prefix, "SIGHTFLEET_LOCAL_AWS_STATE_DIR": str(log_dir / f"aws-state-{prefix}"),
           ENV_FILE_VAR: str(log_dir / f"local-aws-{prefix}.env"), **env_overrides}
    # As on a fresh machine: no endpoint and no credentials; the stack supplies both.
    for name in ("AWS_ENDPOINT_URL", *AWS_TEST_ENV):
        env.pop(name, None)
    log_path = log_dir / f"stack-{prefix}.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([str(REPO / ".venv/bin/python"), "-m", "devstack.stack"], cwd=REPO, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    stack = LocalStack(proc, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{aws_port}", prefix, log_path, env)
    try:
        wait_for(lambda: "Sightfleet web:" in stack.log_text() or proc.poll() is not None, 120,
                 what="the stack to print its URL")
    except AssertionError:
        stack.stop()
        raise
    if proc.poll() is not None:
        raise AssertionError(f"stack exited with {proc.returncode}:\n{stack.log_text()[-4000:]}")
    stack.api_key = printed_admin_key(stack.log_text())
    return stack


def printed_admin_key(log_text: str) -> str:
    """The admin API key a first start prints ("" when the stack started on an endpoint that had one)."""
    from devstack.stack import ADMIN_KEY_LINE
    keys = [line.split(ADMIN_KEY_LINE, 1)[1].strip() for line in log_text.splitlines() if ADMIN_KEY_LINE in line]
    return keys[-1] if keys else ""


def stack_child_pid(stack: LocalStack, *argv_head: str) -> int | None:
    """Pid of the stack's direct child whose arguments after the interpreter start with argv_head."""
    for pid in descendants(stack.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue  # ended meanwhile
        if parent == stack.proc.pid and tuple(argv[1:1 + len(argv_head)]) == argv_head and alive(pid):
            return pid
    return None


def stack_state_dir(stack: LocalStack) -> Path:
    """Where the stack's local AWS endpoint keeps its contents between runs."""
    return Path(stack.env["SIGHTFLEET_LOCAL_AWS_STATE_DIR"])


def start_stack_again(log_dir: Path, previous: LocalStack, **env_overrides: str) -> LocalStack:
    """The stack started again on the ports and prefix of `previous`, which has stopped."""
    import dataclasses
    same = {name: previous.env[name] for name in ("PORT", "SIGHTFLEET_LOCAL_AWS_PORT", "SIGHTFLEET_PREFIX",
                                                    "SIGHTFLEET_LOCAL_AWS_STATE_DIR", ENV_FILE_VAR)}
    stack = start_stack(log_dir, **{**same, **env_overrides})
    return dataclasses.replace(stack, web_url=previous.web_url, aws_url=previous.aws_url, prefix=previous.prefix,
                               api_key=stack.api_key or previous.api_key)


def start_worker_process(settings, instance_id: str, log_path: Path, module: str = "app_tier",
                         **env_overrides: str) -> subprocess.Popen:
    """A real worker process (`python -m <module>`) on settings' endpoint and prefix, logging to log_path."""
    env = {**os.environ, "AWS_ENDPOINT_URL": settings.endpoint_url, "SIGHTFLEET_PREFIX": settings.prefix,
           "SIGHTFLEET_INSTANCE_ID": instance_id, "PYTHONPATH": str(REPO), **env_overrides}
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", module], env=env, cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)
