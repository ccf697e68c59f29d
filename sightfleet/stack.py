"""`python -m sightfleet.stack`: the whole local stack in one supervised process tree (`scripts/run`)."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from sightfleet.config import Settings, settings_or_exit
from sightfleet.errors import SightfleetError
from sightfleet.logs import setup_logging
from sightfleet.procs import die_with_parent, stop_event_on_signals
from sightfleet.resources import provision

log = logging.getLogger("sightfleet.stack")
REPO = Path(__file__).resolve().parents[1]
# Local defaults that suit a small machine; each is one environment variable away.
LOCAL_DEFAULTS = {
    "SIGHTFLEET_MAX_INSTANCES": "3",
    "SIGHTFLEET_IDLE_GRACE_S": "30",
    # moto accepts any credentials; these are placeholders, not secrets.
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Seconds each child gets between SIGTERM and SIGKILL, in shutdown order.
STOP_GRACE_S = {"web": 25, "controller": 10, "local-host": 45, "aws": 5}


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


class Supervisor:
    """Starts the children in order, watches them, and stops them all in reverse order."""

    def __init__(self, settings: Settings, env: dict[str, str], stop: threading.Event):
        self.settings = settings
        self.env = env
        self.web_url = web_url(settings)
        self.aws_url = settings.endpoint_url
        self.children: list[tuple[str, subprocess.Popen]] = []
        self._stop = stop

    def start(self, name: str, argv: list[str]) -> None:
        proc = subprocess.Popen(argv, env=self.env, cwd=REPO, start_new_session=True, preexec_fn=die_with_parent)
        log.info("started %s (pid %s)", name, proc.pid)
        self.children.append((name, proc))

    def run(self) -> int:
        """Start everything, print the URLs, and supervise until the stop event or a child's death."""
        try:
            self._start_all()
            sys.stdout.write(f"Sightfleet web: {self.web_url}\nLocal AWS endpoint: {self.aws_url}\n")
            sys.stdout.flush()
            return self._watch()
        except (StackError, SightfleetError) as exc:
            log.error("%s", exc)
            return 1
        finally:
            self.stop_all()

    def _start_all(self) -> None:
        python = sys.executable
        self.start("aws", moto_command(self.settings.local_aws_port))
        self._wait_until(lambda: answers(self.aws_url + "/moto-api/"), "the local AWS endpoint", 30)
        provision(self.settings)
        self.start("local-host", [python, "-m", "controller.local_host"])
        self.start("controller", [python, "-m", "controller"])
        self.start("web", [python, "-m", "gunicorn", "-c", "web_tier/gunicorn.conf.py", "web_tier.wsgi:app"])
        self._wait_until(lambda: answers(self.web_url + "/healthz", ok_only=True), "the web tier", 60)

    def _wait_until(self, ready, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            self._raise_if_child_died()
            if self._stop.is_set():
                raise StackError(f"stopped while waiting for {what}")
            if time.monotonic() > deadline:
                raise StackError(f"{what} did not come up within {timeout_s:.0f} s")
            self._stop.wait(0.2)

    def _watch(self) -> int:
        try:
            while not self._stop.is_set():
                self._raise_if_child_died()
                self._stop.wait(0.5)
        except StackError as exc:
            log.error("%s; stopping the stack", exc)
            return 1
        log.info("stopping the stack")
        return 0

    def _raise_if_child_died(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None:
                raise StackError(f"{name} (pid {proc.pid}) exited with code {proc.returncode}")

    def stop_all(self) -> None:
        """SIGTERM each child's process group, newest first; SIGKILL what outlives its grace."""
        for name, proc in reversed(self.children):
            _stop_group(name, proc, STOP_GRACE_S.get(name, 10))
        self.children.clear()


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


def moto_command(port: int) -> list[str]:
    """The local AWS endpoint: moto, served with keep-alive on loopback (see sightfleet/emulator.py)."""
    return [sys.executable, "-m", "sightfleet.emulator", "-H", "127.0.0.1", "-p", str(port)]


def answers(url: str, ok_only: bool = False) -> bool:
    """True when url answers HTTP at all (or, with ok_only, answers 2xx)."""
    try:
        reply = requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return reply.ok or not ok_only


def _lock(aws_port: int, info: dict):
    """Hold a lock per local AWS port so a second run says so instead of failing obscurely."""
    run_dir = REPO / ".run"
    run_dir.mkdir(exist_ok=True)
    handle = open(run_dir / f"stack-{aws_port}.lock", "a+")
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


def local_environment(environ: dict[str, str], settings: Settings) -> dict[str, str]:
    """The children's environment: environ with the local endpoint, the web port and the repo on the path."""
    env = dict(environ)
    env["AWS_ENDPOINT_URL"] = settings.endpoint_url
    env["PORT"] = str(settings.port)  # gunicorn binds PORT; settings.port may have come from SIGHTFLEET_PORT
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def main() -> int:
    setup_logging("stack")
    environ = {**LOCAL_DEFAULTS, **os.environ}
    settings = local_settings(environ)
    env = local_environment(environ, settings)
    os.environ.update(env)  # the supervisor provisions with the local credentials too
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
        return Supervisor(settings, env, stop_event_on_signals()).run()


if __name__ == "__main__":
    sys.exit(main())
