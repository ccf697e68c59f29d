"""`python -m devstack.stack`: the whole local stack in one supervised process tree (`scripts/run`).

The supervisor heals the stack as systemd and EC2 do on AWS: a child that dies is started
again with backoff (`RestartPolicy`), and when the local AWS endpoint comes back empty (it
died, or lost its state) every resource is provisioned again and the saved contents are loaded
back (devstack/local_state.py); both are retried every probe until they succeed. The web tier, the controller and the local host keep their
processes and their boto3 clients: the endpoint's URL, and so every queue URL, stays the same.
Only Ctrl-C or SIGTERM stops the stack, each child in reverse order of start.

`python -m devstack.stack --fresh` starts with an empty endpoint (the saved state is moved to
`.run/aws-<port>.previous`); `--no-persist` keeps nothing on disk.

Accounts: on the first start (no admin in the endpoint's accounts table) the stack makes
an admin and prints, once, a one-time sign-in link and the admin's API key; later starts say how to
make a new link. Session cookies are signed with SIGHTFLEET_SECRET_KEY, or with a key the stack
generates once and keeps beside the endpoint's saved state (mode 0600), so sessions survive restarts.

Access (docs/security-local.md): every start draws a new key pair and control token
(sightfleet/local_access.py); the endpoint accepts nothing else (devstack/endpoint_guard.py), the
children get the pair instead of any credentials the user's environment has, and the user's tools
get it from `.run/local-aws.env`. Everything under `.run/` is the user's alone (umask 077).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from devstack.endpoint_guard import READY_PATH
from sightfleet.config import Settings, settings_or_exit
from sightfleet.errors import NotFound, SightfleetError
from sightfleet.local_access import (ACCESS_KEY_VAR, CONTROL_TOKEN_VAR, DEFAULT_ENV_FILE, ENV_FILE_VAR, RUN_DIR,
                                     SECRET_KEY_VAR, LocalAccess, env_file_path, lock_file, make_private,
                                     private_dir, write_env_file)
from sightfleet.logs import setup_logging
from sightfleet.procs import die_with_parent, stop_event_on_signals
from sightfleet.resources import Resources, provision
from sightfleet.secretbox import kept_key, local_credentials_key

log = logging.getLogger("devstack.stack")
REPO = Path(__file__).resolve().parents[1]
# Local defaults that suit a small machine; each is one environment variable away.
LOCAL_DEFAULTS = {
    "SIGHTFLEET_MAX_INSTANCES": "3",
    "SIGHTFLEET_IDLE_GRACE_S": "30",
    # A warm pool the size of the cap: a stopped local worker is a SIGSTOPped process (memory, no CPU).
    "SIGHTFLEET_WARM_POOL_SIZE": "3",
    "SIGHTFLEET_POOL_GRACE_S": "5",
    # The credentials are this run's own (LocalAccess), whatever the environment has.
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Seconds each child gets between SIGTERM and SIGKILL, in shutdown order.
STOP_GRACE_S = {"web": 25, "webhooks": 15, "controller": 10, "local-host": 45, "aws": 5}
WATCH_S = 0.5  # how often the children are checked
PROBE_S = 2.0  # how often the endpoint is asked whether every resource of the stack still exists
# A restore of a large saved state takes a while (benchmarks/persistence.py: 0.3 s for 1,000 images);
# the save at stop is bounded tighter, so a frozen endpoint cannot hold up Ctrl-C for long.
STATE_CALL_TIMEOUT_S = {"restore": 300, "save": 30}
LOCAL_ADMIN = "admin"
SESSION_KEY_VAR = "SIGHTFLEET_SECRET_KEY"
CREDENTIALS_KEY_VAR = "SIGHTFLEET_CREDENTIALS_KEY"
ADMIN_KEY_LINE = "Admin API key (shown once): "
# Never in the children's common environment: the session key (the web tier's alone), what the endpoint
# accepts (its alone, see endpoint_env), and the user's own AWS identity (the children use this run's pair).
_NOT_FOR_CHILDREN = (SESSION_KEY_VAR, ACCESS_KEY_VAR, SECRET_KEY_VAR, CONTROL_TOKEN_VAR, "AWS_SESSION_TOKEN",
                     "AWS_PROFILE")


class StackError(RuntimeError):
    """The stack cannot start; the message tells the user what to do."""


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class RestartPolicy:
    """When to start a dead child again: systemd's RestartSec with backoff, and its burst limit.

    Past the burst (more than `burst` deaths within `interval_s`) systemd would give up on the
    unit; here the child is still started again, every `slow_retry_s`, and each attempt says
    loudly that it crash-loops. Locally nothing else would ever bring it back (on AWS the
    controller's heartbeat check and a new instance do), and what kills a child here is often
    passing (the endpoint restarting, a poison message that redrive soon moves on), while the
    rest of the stack keeps serving meanwhile. Only Ctrl-C or SIGTERM stops the stack.
    """

    delay_s: float = 1.0
    max_delay_s: float = 30.0
    burst: int = 5
    interval_s: float = 120.0
    slow_retry_s: float = 60.0

    def next_delay(self, deaths: list[float], now: float) -> tuple[float, bool]:
        """Seconds to wait before the next start, and whether the child crash-loops."""
        recent = sum(1 for when in deaths if now - when <= self.interval_s)
        if recent > self.burst:
            return self.slow_retry_s, True
        return min(self.max_delay_s, self.delay_s * 2 ** max(0, recent - 1)), False


@dataclass
class Child:
    """One supervised process and its restart history."""

    name: str
    argv: list[str]
    proc: subprocess.Popen
    deaths: list[float] = field(default_factory=list)  # monotonic times, within the policy's interval
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # environment only this child gets
    restart_at: float | None = None  # set while it is dead and waiting to be started again


class Supervisor:
    """Starts the children in order, restarts any that dies, keeps the endpoint provisioned, stops in reverse."""

    def __init__(self, settings: Settings, env: dict[str, str], stop: threading.Event,
                 state_dir: Path | None = None, policy: RestartPolicy = RestartPolicy(), probe_s: float = PROBE_S,
                 web_secrets: dict[str, str] | None = None, access: LocalAccess | None = None):
        self.settings = settings
        self.env = env
        # The endpoint's key pair and control token: given, or those env pins (a test harness's).
        self.access = access or LocalAccess.from_environ(env) or LocalAccess.generate()
        self.web_secrets = web_secrets or {}
        self.web_url = web_url(settings)
        self.aws_url = settings.endpoint_url
        self.state_dir = state_dir
        self.policy = policy
        self.children: list[Child] = []
        self._stop = stop
        self._stopping = threading.Event()
        self._endpoint_restarted = threading.Event()
        self.probe_s = probe_s
        # Set from a probe that found a resource missing (or a start-up restore that failed) until
        # provisioning and the restore have both succeeded: a half-done repair is retried, not forgotten.
        self._needs_setup = threading.Event()

    def start(self, name: str, argv: list[str], secrets: dict[str, str] | None = None) -> None:
        """Start a child; `secrets` go into its environment only (not the controller's, say, nor user data)."""
        secrets = dict(secrets or {})
        self.children.append(Child(name, argv, self._spawn(argv, secrets), secrets=secrets))
        log.info("started %s (pid %s)", name, self.children[-1].proc.pid)

    def _spawn(self, argv: list[str], secrets: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(argv, env={**self.env, **secrets}, cwd=REPO, start_new_session=True, preexec_fn=die_with_parent)

    def run(self) -> int:
        """Start everything, print the URLs, and supervise until the stop event."""
        try:
            welcome = self._start_all()
            sys.stdout.write("".join(line + "\n" for line in welcome))
            sys.stdout.write(f"Sightfleet web: {self.web_url}\nLocal AWS endpoint: {self.aws_url}\n"
                             f"Its credentials for your own tools (this run only): set -a; . "
                             f"{_shown(env_file_path(self.env))}; set +a\n")
            sys.stdout.flush()
            threading.Thread(target=self.keep_endpoint, name="endpoint-keeper", daemon=True).start()
            return self._watch()
        except (StackError, SightfleetError) as exc:
            log.error("%s", exc)
            return 1
        finally:
            self.stop_all()

    def _start_all(self) -> list[str]:
        """Start every child; returns the lines that tell how to sign in."""
        python = sys.executable
        self.start("aws", moto_command(self.settings.local_aws_port, self.state_dir), endpoint_env(self.access))
        self._wait_until(lambda: answers(self.aws_url + READY_PATH, ok_only=True), "the local AWS endpoint", 30)
        if self._set_up_endpoint():
            welcome = sign_in_help(self.settings, self.web_url, env_file_path(self.env))
        else:
            self._needs_setup.set()  # the keeper tries the restore again
            # An admin made now would be overwritten by the restore, or shadow the saved one.
            welcome = ["The saved accounts are not loaded yet; once they are, sign in as before."]
        self.start("local-host", [python, "-m", "devstack.local_host"])
        self.start("controller", [python, "-m", "controller"])
        self.start("web", [python, "-m", "gunicorn", "-c", "web_tier/gunicorn.conf.py", "web_tier.wsgi:app"],
                   self.web_secrets)
        # The webhook deliverer opens signing secrets: the credentials key, never the session key.
        self.start("webhooks", [python, "-m", "web_tier.webhooks"],
                   {k: v for k, v in self.web_secrets.items() if k == CREDENTIALS_KEY_VAR})
        self._wait_until(lambda: answers(self.web_url + "/healthz", ok_only=True), "the web tier", 60)
        return welcome

    def _wait_until(self, ready, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            self.restart_dead_children()
            if self._stop.is_set():
                raise StackError(f"stopped while waiting for {what}")
            if time.monotonic() > deadline:
                raise StackError(f"{what} did not come up within {timeout_s:.0f} s")
            self._stop.wait(0.2)

    def _watch(self) -> int:
        while not self._stop.is_set():
            self.restart_dead_children()
            self._stop.wait(WATCH_S)
        log.info("stopping the stack")
        return 0

    def restart_dead_children(self) -> None:
        """Notice each child that died and start it again once its backoff has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None and child.proc.poll() is not None:
                self._note_death(child, now)
            elif child.restart_at is not None and now >= child.restart_at:
                self._restart(child)

    def _note_death(self, child: Child, now: float) -> None:
        log.error("%s (pid %s) died: %s", child.name, child.proc.pid, describe_exit(child.proc.returncode))
        _signal_group(child.proc.pid, signal.SIGTERM)  # what it left behind stops now, and is killed at the restart
        child.deaths = [when for when in child.deaths if now - when <= self.policy.interval_s] + [now]
        delay, crash_looping = self.policy.next_delay(child.deaths, now)
        if crash_looping:
            log.error("%s CRASH-LOOPS: it died %s times within %.0f s; starting it again every %.0f s until it "
                      "stays up (the rest of the stack keeps running; its own log lines above say why it dies)",
                      child.name, len(child.deaths), self.policy.interval_s, delay)
        else:
            log.warning("restarting %s in %.0f s", child.name, delay)
        child.restart_at = now + delay

    def _restart(self, child: Child) -> None:
        old_pid = child.proc.pid
        _signal_group(old_pid, signal.SIGKILL)  # e.g. gunicorn workers still holding the port
        child.proc = self._spawn(child.argv, child.secrets)
        child.restart_at = None
        log.warning("restarted %s: pid %s (was %s; %s deaths within %.0f s)", child.name, child.proc.pid, old_pid,
                    len(child.deaths), self.policy.interval_s)
        if child.name == "aws":
            self._endpoint_restarted.set()

    def keep_endpoint(self) -> None:
        """Until the stack stops: provision again and restore whenever the endpoint lost any of the stack's resources."""
        checks = None
        answering = True
        while not self._stopping.is_set() and not self._stop.is_set():
            self._endpoint_restarted.wait(self.probe_s)
            self._endpoint_restarted.clear()
            if self._stopping.is_set() or self._stop.is_set():
                return
            try:
                checks = checks or Resources.connect(self.settings).checks()
                answering = self._tend_endpoint(checks, answering)
            except Exception:  # noqa: BLE001 - the keeper must outlive any bug or surprise; the next round retries
                log.exception("keeping the local AWS endpoint provisioned failed; trying again in %.0f s", self.probe_s)

    def _tend_endpoint(self, checks: dict, answering: bool) -> bool:
        """One probe round, and the repair it calls for; returns whether the endpoint answered."""
        if not self._needs_setup.is_set():
            try:
                missing = _missing(checks)
            except SightfleetError as exc:
                if answering:
                    log.warning("the local AWS endpoint does not answer (%s); the stack carries on and waits", exc)
                return False
            if not answering:
                log.info("the local AWS endpoint answers again")
            if missing:
                log.warning("the local AWS endpoint lost the stack's state (no %s); provisioning again",
                            ", ".join(missing))
                self._needs_setup.set()
        if self._needs_setup.is_set() and self._set_up_quietly():
            self._needs_setup.clear()
        return True

    def _set_up_quietly(self) -> bool:
        try:
            if self._set_up_endpoint():
                return True
            log.error("the saved state is not loaded yet, and until it is the endpoint keeps nothing; "
                      "trying again in %.0f s", self.probe_s)
        except SightfleetError as exc:
            log.warning("provisioning failed (%s); trying again in %.0f s", exc, self.probe_s)
        return False

    def _set_up_endpoint(self) -> bool:
        """Create every resource, then load the endpoint's saved contents into them; False if the restore failed."""
        provision(self.settings)
        return self.state_dir is None or self._restore()

    def _restore(self) -> bool:
        figures = _state_call(self.aws_url, "restore", self.access.control_headers())
        if figures is None:
            return False
        if figures.get("restored"):
            saved_at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(figures["saved_at"]))
            log.info("restored the local AWS endpoint's state saved at %s in %.2f s: %s messages, %s items, "
                     "%s objects (%s)", saved_at, figures["seconds"], figures["queues"]["restored"],
                     figures["tables"]["restored"], figures["objects"]["restored"], _not_restored(figures))
        elif figures.get("kept_at"):
            log.error("the saved state could not be loaded (%s): the stack carries on without it; the old copy is "
                      "at %s", figures["reason"], figures["kept_at"])
        else:
            log.info("%s in %s: the local AWS endpoint starts empty", figures.get("reason", "no saved state"),
                     self.state_dir)
        return True

    def stop_all(self) -> None:
        """SIGTERM each child's process group, newest first; SIGKILL what outlives its grace."""
        self._stopping.set()
        for child in reversed(self.children):
            if child.name == "aws" and self.state_dir is not None and child.proc.poll() is None:
                self._save()
            _stop_group(child.name, child.proc, STOP_GRACE_S.get(child.name, 10))
        self.children.clear()


    def _save(self) -> None:
        figures = _state_call(self.aws_url, "save", self.access.control_headers())
        if figures is None:
            return  # _state_call said why
        if figures.get("saved"):
            log.info("saved the local AWS endpoint's state to %s in %.2f s (%s messages, %s items, "
                     "%s objects)", self.state_dir, figures["seconds"], figures["messages"],
                     figures["items"], figures["objects"])
        else:
            log.error("the local AWS endpoint refused to save its state (%s): what changed since it last started "
                      "is not kept; the previous snapshot in %s stays as it was", figures.get("reason"), self.state_dir)


def sign_in_help(settings: Settings, url: str, env_file: Path = DEFAULT_ENV_FILE) -> list[str]:
    """First start: make the local admin, and say once how to sign in; later: how to get a new sign-in link.

    The command it prints finds the endpoint's credentials in env_file by itself (sightfleet/local_access.py).
    """
    from sightfleet.accounts import LINK_TTL_S, Accounts
    accounts = Accounts(Resources.connect(settings).accounts)
    env_var = f"{ENV_FILE_VAR}={env_file} " if env_file != DEFAULT_ENV_FILE else ""
    command = (f"{env_var}AWS_ENDPOINT_URL={settings.endpoint_url} SIGHTFLEET_PREFIX={settings.prefix} "
               f"{REPO / '.venv/bin/python'} -m web_tier.accounts link {LOCAL_ADMIN} --url {url}")
    if accounts.has_admin():
        return [f"An admin account exists. A new one-time sign-in link: {command}"]
    _, issued = accounts.create(LOCAL_ADMIN, admin=True)
    token = accounts.make_link(LOCAL_ADMIN)
    log.info("created the local admin account %r (key %s)", LOCAL_ADMIN, issued.key_id)
    return [f"Sign in as {LOCAL_ADMIN} (once, within {LINK_TTL_S // 60} min): {url}/signin/link?token={token}",
            f"{ADMIN_KEY_LINE}{issued.key}",
            f"Later, a new sign-in link: {command}"]


def session_key_file(state_dir: Path) -> Path:
    """Where the stack keeps its session-signing key: beside the endpoint's saved state."""
    return state_dir.with_name(state_dir.name + ".session-key")


def local_session_key(state_dir: Path | None) -> str:
    """The session-signing key kept in the state dir (made once, mode 0600); a fresh one when nothing persists."""
    if state_dir is None:
        return secrets.token_urlsafe(32)
    return kept_key(session_key_file(state_dir))


def _missing(checks: dict) -> list[str]:
    """The names of the resources whose check finds them gone; raises what else a check raises."""
    missing = []
    for name, check in checks.items():
        try:
            check()
        except NotFound:
            missing.append(name)
    return missing


def describe_exit(returncode: int) -> str:
    """A process's end in words: its exit code, or the signal that killed it."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _not_restored(figures: dict) -> str:
    """What a restore left out: entries already there, and those of resources that no longer exist."""
    kept = sum(figures[part]["kept"] for part in ("queues", "tables", "objects"))
    orphaned = {name: count for part in ("queues", "tables", "objects")
                for name, count in figures[part].items() if name.startswith("skipped_") and count}
    return f"already there: {kept}; of resources this stack does not have: {orphaned or 'none'}"


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _state_call(aws_url: str, action: str, headers: dict[str, str]) -> dict | None:
    """POST the endpoint's save or restore action (headers: the control token); None (logged) when it cannot be done."""
    try:
        reply = requests.post(f"{aws_url}/_sightfleet/state/{action}", headers=headers,
                              timeout=STATE_CALL_TIMEOUT_S[action])
        reply.raise_for_status()
        return reply.json()
    except (requests.RequestException, ValueError) as exc:
        log.error("could not %s the local AWS endpoint's state: %s", action, exc)
        return None


def _stop_group(name: str, proc: subprocess.Popen, grace_s: float) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0f s; killing it", name, grace_s)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # also reaps grandchildren left in the group
    except ProcessLookupError:
        pass
    proc.wait()
    log.info("stopped %s", name)


def moto_command(port: int, state_dir: Path | None = None) -> list[str]:
    """The local AWS endpoint: moto, served with keep-alive on loopback (see devstack/emulator.py)."""
    argv = [sys.executable, "-m", "devstack.emulator", "-H", "127.0.0.1", "-p", str(port)]
    return argv + (["--state-dir", str(state_dir)] if state_dir is not None else [])


def endpoint_env(access: LocalAccess) -> dict[str, str]:
    """The environment only the endpoint's process gets: what it accepts, and moto's global CORS off."""
    return {**access.endpoint_env(), "MOTO_DISABLE_GLOBAL_CORS": "true"}


def _shown(path: Path) -> str:
    """A path as the user would type it from the checkout."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def answers(url: str, ok_only: bool = False) -> bool:
    """True when url answers HTTP at all (or, with ok_only, answers 2xx)."""
    try:
        reply = requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return reply.ok or not ok_only


def _lock(aws_port: int, info: dict):
    """Hold a lock per local AWS port so a second run says so instead of failing obscurely."""
    private_dir(RUN_DIR)
    handle = open(lock_file(aws_port), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip()
        raise StackError(f"Sightfleet is already running here ({other}); stop it first "
                         "(Ctrl-C in its terminal) or set PORT and SIGHTFLEET_LOCAL_AWS_PORT to run another")
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(info))
    handle.flush()
    return handle


def web_url(settings: Settings) -> str:
    """Where the stack's web tier answers."""
    return f"http://127.0.0.1:{settings.port}"


def local_settings(environ: dict[str, str]) -> Settings:
    """The stack's settings from environ, always on the stack's own endpoint whatever environ names."""
    settings = settings_or_exit(log, environ)
    return settings.with_changes(endpoint_url=f"http://127.0.0.1:{settings.local_aws_port}")


def local_environment(environ: dict[str, str], settings: Settings, access: LocalAccess) -> dict[str, str]:
    """The children's environment: environ with the local endpoint and this run's key pair (never the user's
    own credentials), the web port and the repo on the path.

    Without the session key: only the web tier signs sessions, and it gets the key on its own (web_secrets);
    without the control token: only the endpoint and the supervisor have it.
    """
    env = {name: value for name, value in environ.items() if name not in (*_NOT_FOR_CHILDREN, CREDENTIALS_KEY_VAR)}
    env.update(access.client_env())
    env["AWS_ENDPOINT_URL"] = settings.endpoint_url
    env["PORT"] = str(settings.port)  # gunicorn binds PORT; settings.port may have come from SIGHTFLEET_PORT
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def state_dir_for(settings: Settings) -> Path:
    """Where the endpoint keeps its contents between runs: SIGHTFLEET_LOCAL_AWS_STATE_DIR, else one per port."""
    return settings.local_state_path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/run", description="Run the whole Sightfleet stack locally.")
    parser.add_argument("--fresh", action="store_true",
                        help="start with an empty local AWS endpoint (the saved state is moved to .run/aws-<port>.previous)")
    parser.add_argument("--no-persist", action="store_true",
                        help="keep nothing on disk: the endpoint starts empty and its contents end with the stack")
    return parser.parse_args(argv)


def _set_aside(state_dir: Path) -> None:
    """--fresh: keep the previous saved state one run longer, out of the way."""
    if state_dir.exists():
        previous = state_dir.with_name(state_dir.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        state_dir.rename(previous)
        log.info("starting fresh; the previous state is kept at %s until the next --fresh", previous)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    os.umask(0o077)   # what the stack and its children write (snapshots, keys, logs) is the user's alone
    setup_logging("stack")
    environ = {**LOCAL_DEFAULTS, **os.environ}
    settings = local_settings(environ)
    access = LocalAccess.from_environ(environ) or LocalAccess.generate()
    env = local_environment(environ, settings, access)
    for name in (*_NOT_FOR_CHILDREN, CREDENTIALS_KEY_VAR):
        os.environ.pop(name, None)  # the session and credentials keys go on to the web tier alone, the token to
    os.environ.update(env)          # the endpoint; the supervisor provisions with this run's credentials too
    info = {"pid": os.getpid(), "web": web_url(settings), "aws": settings.endpoint_url}
    try:
        lock = _lock(settings.local_aws_port, info)
        for port, what, var in ((settings.local_aws_port, "local AWS endpoint", "SIGHTFLEET_LOCAL_AWS_PORT"),
                                (settings.port, "web tier", "PORT")):
            if not port_is_free(port):
                raise StackError(f"port {port} for the {what} is in use by another program; set {var}")
    except StackError as exc:
        log.error("%s", exc)
        return 1
    with lock:
        state_dir = None if args.no_persist else state_dir_for(settings)
        if state_dir is not None and args.fresh:
            _set_aside(state_dir)
        _make_run_private(state_dir)
        write_env_file(env_file_path(environ), settings.endpoint_url, settings.region, access)
        # Only the web tier signs sessions; the other children (and the user data the controller writes) never see it.
        web_secrets = {SESSION_KEY_VAR: settings.secret_key or local_session_key(state_dir),
                       CREDENTIALS_KEY_VAR: settings.credentials_key or local_credentials_key(settings)}
        return Supervisor(settings, env, stop_event_on_signals(), state_dir, web_secrets=web_secrets,
                          access=access).run()


def _make_run_private(state_dir: Path | None) -> None:
    """Close .run/ (0700: what it holds is out of others' reach) and what an older version left open to others
    in the endpoint's state folders (0700 folders, 0600 files)."""
    private_dir(RUN_DIR)
    for root in ([state_dir, state_dir.with_name(state_dir.name + ".previous")] if state_dir else []):
        changed = make_private(root)
        if changed:
            log.warning("made %s entries under %s private to you (they were readable by others)", changed, root)


if __name__ == "__main__":
    sys.exit(main())
