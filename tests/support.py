"""Test helpers: free ports, a moto server, the local stack as `scripts/run` starts it, real photos."""
from __future__ import annotations

import contextlib
import fcntl
import html
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from sightfleet.endpoint_guard import READY_PATH
from sightfleet.local_access import ENV_FILE_VAR, LocalAccess
from sightfleet.stack import answers, endpoint_env, moto_command
from web_tier.accounts import Accounts

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"
# This test run's own key pair and control token, drawn at import as scripts/run draws its own: every endpoint
# and stack the harness starts accepts these and nothing else, so the test process speaks to all of them.
TEST_ACCESS = LocalAccess.generate()
AWS_TEST_ENV = {**TEST_ACCESS.client_env(), "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_prefix(name: str = "t") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def wait_for(check, timeout_s: float, interval_s: float = 0.2, what: str = "condition"):
    """Poll check() until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def use_test_access() -> None:
    """Give this process (and every endpoint or stack it starts) the run's test key pair and control token.

    It replaces credentials of the caller's own: the harness never sends real ones to a local endpoint.
    """
    os.environ.update({**AWS_TEST_ENV, **endpoint_env(TEST_ACCESS)})
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


def control_headers() -> dict[str, str]:
    """What a control request (/_sightfleet/state/..., /moto-api/...) to a harness endpoint carries."""
    return TEST_ACCESS.control_headers()


def sigv4_headers(url: str, method: str, body: bytes, service: str, headers: dict,
                  access: LocalAccess = TEST_ACCESS) -> dict[str, str]:
    """The headers of a request signed as boto3 signs it (botocore's SigV4), by default with the run's test pair."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(access.access_key_id, access.secret_access_key), service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def environ_for(method: str, url: str, headers: dict, body: bytes = b"") -> dict:
    """A WSGI environ as gunicorn builds it for this request."""
    from urllib.parse import unquote
    parts = urlsplit(url)
    environ = {"REQUEST_METHOD": method, "PATH_INFO": unquote(parts.path), "QUERY_STRING": parts.query,
               "RAW_URI": parts.path + (f"?{parts.query}" if parts.query else ""), "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": parts.netloc}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


@contextlib.contextmanager
def running_stack_env_file(path: Path, endpoint_url: str):
    """A local-aws.env for endpoint_url with the run's test pair, whose stack counts as running meanwhile
    (its lock on the endpoint's port is held, as `scripts/run` holds it)."""
    from sightfleet.local_access import RUN_DIR, lock_file, private_dir, write_env_file
    write_env_file(path, endpoint_url, "us-east-1", TEST_ACCESS)
    private_dir(RUN_DIR)
    lock = lock_file(urlsplit(endpoint_url).port)
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            lock.unlink()


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


def sign_in_with_key(client, resources, name: str, admin: bool = False) -> str:
    """Create an account on resources and make the Flask test client send its API key; returns the key."""
    from web_tier.accounts import Accounts
    _, issued = Accounts(resources.accounts).create(name, admin=admin)
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {issued.key}"
    client.api_key = issued.key
    return issued.key


def keyed_client(app, resources, name: str = "tester", admin: bool = False):
    """A test client of app that sends a new account's API key (the account is made on resources)."""
    client = app.test_client()
    sign_in_with_key(client, resources, name, admin)
    return client


def key_sending_client_class(key: str):
    """A Flask test client class whose clients send this API key (for `app.test_client_class`)."""
    from flask.testing import FlaskClient

    class KeySendingClient(FlaskClient):
        api_key = key

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return KeySendingClient


def open_sign_in_link(driver, url: str) -> None:
    """In a browser, open a one-time sign-in link and press its button (a GET alone signs nobody in)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    button = driver.find_element("id", "use-sign-in-link")
    button.click()
    # click() returns before the POST's navigation: wait until the link page is gone and the landing page
    # has loaded, or a caller's next step could run on the page that is about to go away.
    wait = WebDriverWait(driver, 20, poll_frequency=0.1)
    wait.until(expected_conditions.staleness_of(button), message="the sign-in link page to go away")
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete",
               message="the page after sign-in to load")


def redeem_sign_in_link(session: requests.Session, url: str, **kwargs) -> requests.Response:
    """What a browser does with a one-time link: open its page, then post its form (token, next, CSRF)."""
    page = session.get(url, timeout=10).text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    action = url.split("/signin/link")[0] + "/signin/link"
    return session.post(action, data={k: html.unescape(v) for k, v in fields.items()}, timeout=10, **kwargs)


def sign_in_url(web_url: str, accounts, name: str, next_path: str = "/") -> str:
    """The one-time sign-in link of `name` (made by accounts, a web_tier Accounts), opening next_path."""
    from urllib.parse import urlencode
    return f"{web_url}/signin/link?" + urlencode({"token": accounts.make_link(name), "next": next_path})


def bearer(key: str) -> dict:
    """The header a program sends with an API key."""
    return {"Authorization": f"Bearer {key}"}


def jpeg_bytes(name: str = "chelsea", scale: float = 1.0, quality: int = 90) -> bytes:
    """A real photo from skimage.data encoded as JPEG."""
    from PIL import Image
    from skimage import data
    image = Image.fromarray(getattr(data, name)())
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def _proc_stats() -> dict[int, list[str]]:
    """Every process's /proc/<pid>/stat fields after the command name (state first), in one pass."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue   # ended meanwhile
    return stats


def descendants(pid: int, stats: dict[int, list[str]] | None = None) -> set[int]:
    """Every live process below pid, read from /proc."""
    children: dict[int, list[int]] = {}
    for each, fields in (stats or _proc_stats()).items():
        children.setdefault(int(fields[1]), []).append(each)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tree_cpu_ms(pid: int) -> float:
    """CPU time (user + system) so far of a process and every live process below it, from /proc."""
    stats = _proc_stats()
    ticks = sum(int(stats[each][11]) + int(stats[each][12])
                for each in {pid} | descendants(pid, stats) if each in stats)
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class LocalStack:
    """A running `python -m sightfleet.stack`, as `scripts/run` starts it."""

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
        proc = subprocess.Popen([str(REPO / ".venv/bin/python"), "-m", "sightfleet.stack"], cwd=REPO, env=env,
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
    from sightfleet.stack import ADMIN_KEY_LINE
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
