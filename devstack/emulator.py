"""The local AWS endpoint: moto's WSGI application served by gunicorn, with keep-alive.

`python -m devstack.emulator --port 4566` is what `scripts/run` and the tests start.
Why not moto's own `python -m moto.server`: it runs werkzeug's development server, which
closes the connection after every response and starts a thread per request, and moto's
dispatcher works out each request's service by scanning its table of URL patterns (and
listing its own package folder) under one global lock. Served here, connections stay open
and each service's backend is looked up once; a call then costs the emulator a fifth to
two-fifths less CPU and takes 15-33% less time (`benchmarks/emulator.py`). It is still moto: the
same application, the same state, the same /moto-api/. One worker process, because moto
keeps everything in that process's memory.

Repairs to moto's costs, same answers: devstack/moto_patches.py lists them (receiving 10 jobs
from a backlog of 80 took 55-130 ms; it now takes 6), and puts them in place only on the moto
versions they were tested against; SIGHTFLEET_EMULATOR_PATCHES=off serves plain moto.

With `--state-dir DIR` the endpoint keeps its contents there (devstack/local_state.py): a
snapshot every few seconds, and on `POST /_sightfleet/state/save`; `POST /_sightfleet/state/restore`
loads the saved contents into the queues, buckets and tables that exist by then (the stack calls
it right after provisioning). Both answer JSON figures. Every other request is served inside the
state's `RequestGate`, so a snapshot's copy and a restore each happen between requests, never
in the middle of one; a long poll steps out of the gate while it waits for a message.

Only this run's processes and tools get through (devstack/endpoint_guard.py): the endpoint takes
the key pair and control token it accepts from its environment (sightfleet/local_access.py) and
refuses to start without them; moto's CORS headers for every origin are off.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from pathlib import Path

from gunicorn.app.base import BaseApplication
from moto.moto_server import werkzeug_app
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from devstack.endpoint_guard import EndpointGuard, allowed_hosts
from devstack.local_state import EndpointState, RequestGate
from devstack.moto_patches import apply_patches, installed_moto_version, moto_is_tested
from sightfleet.config import settings_or_exit
from sightfleet.local_access import AccessError, LocalAccess
from sightfleet.logs import setup_logging

# Enough for every long poll of a full local fleet at once; idle keep-alive connections
# wait in gunicorn's poller and hold no thread.
THREADS = 128
STATE_PATH = "/_sightfleet/state/"
# Seconds between snapshots: what a kill -9 of the endpoint can lose at most.
SAVE_INTERVAL_S = 5.0
# Seconds of silence after which gunicorn's master replaces its worker (see server_options).
WORKER_SILENCE_S = 300
log = logging.getLogger("devstack.emulator")


# DynamoDB's item writes. moto applies one as read, change, write with no lock, so two at once could
# both read the same item: two concurrent `ADD hits :one` left the count one short (a lost update).
# DynamoDB applies the writes to an item one at a time; here they are applied one at a time, all items alike.
_ITEM_WRITES = frozenset(f"DynamoDB_20120810.{action}" for action in (
    "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"))


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, applying DynamoDB's item writes one at a time."""

    def __init__(self):
        super().__init__(create_backend_app)
        self._item_writes = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET") not in _ITEM_WRITES:
            return super().__call__(environ, start_response)
        with self._item_writes:
            return super().__call__(environ, start_response)


class _Persistent:
    """The dispatcher, plus the save and restore routes of the endpoint's state, and its saver thread."""

    def __init__(self, dispatcher, state: EndpointState, save_interval_s: float):
        self._dispatcher = dispatcher
        self.state = state
        self._save_interval_s = save_interval_s
        self._saver_stop = threading.Event()

    def start_saving(self) -> None:
        """Start the periodic snapshots (in the serving process, after gunicorn forked it)."""
        self.state.save_every(self._save_interval_s, self._saver_stop)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(STATE_PATH):
            with self.state.gate.serving():
                return self._dispatcher(environ, start_response)
        action = path[len(STATE_PATH):]
        if environ.get("REQUEST_METHOD") != "POST" or action not in ("save", "restore"):
            return _json_reply(start_response, "404 Not Found", {"error": f"no such state action: {action}"})
        figures = self.state.save() if action == "save" else self.state.restore()
        log.info("state %s: %s", action, figures)
        return _json_reply(start_response, "200 OK", figures)


def _long_polls_step_out(gate: RequestGate) -> None:
    """Make moto's long poll leave the gate while it waits, so a save or restore need not wait for it.

    moto's receive waits on the queue, up to a second at a time, until a message comes or its
    wait time is over; a poll holding the gate meanwhile would hold up snapshots for 20 s.
    """
    from moto.sqs.models import Queue   # a private method of moto's: only on a tested version (see main)
    moto_wait = Queue.wait_for_messages

    def wait_for_messages(queue: Queue, timeout: int) -> None:
        with gate.stepped_out():
            moto_wait(queue, timeout)
    Queue.wait_for_messages = wait_for_messages


def _json_reply(start_response, status: str, body: dict):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class _Server(BaseApplication):
    """gunicorn with its settings given here rather than read from a command line or file."""

    def __init__(self, app, options: dict, on_load=None):
        self._app = app
        self._options = options
        self._on_load = on_load
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        # Called in the serving process once gunicorn forked it: threads started here live there.
        if self._on_load is not None:
            self._on_load()
        return self._app


def server_options(host: str, port: int) -> dict:
    """gunicorn settings for the emulator: one process, threads, quick to stop.

    The worker process holds all of moto's state, so gunicorn must not replace it lightly: after
    the endpoint was frozen (SIGSTOP of its process group, as the chaos test does, for up to 30 s)
    its master would find the worker silent past gunicorn's default 30 s timeout and kill it.
    """
    return {"bind": f"{host}:{port}", "workers": 1, "worker_class": "gthread", "threads": THREADS,
            "keepalive": 30, "graceful_timeout": 2, "timeout": WORKER_SILENCE_S, "loglevel": "warning"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve moto's AWS emulator on loopback.")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    parser.add_argument("--state-dir", type=Path, help="keep the endpoint's contents in this folder")
    parser.add_argument("--save-interval", type=float, default=SAVE_INTERVAL_S, help="seconds between snapshots")
    parser.add_argument("--moto-patches", choices=("on", "off"),
                        help="put moto's faster replacements in place (default: SIGHTFLEET_EMULATOR_PATCHES, on)")
    args = parser.parse_args(argv)
    setup_logging("aws")
    try:
        access = LocalAccess.from_environ(os.environ)
    except AccessError as exc:
        parser.error(str(exc))
    if access is None:
        parser.error("no access configured: set SIGHTFLEET_LOCAL_AWS_ACCESS_KEY_ID, ..._SECRET_ACCESS_KEY and "
                     "..._CONTROL_TOKEN (scripts/run does; see docs/security-local.md)")
    os.umask(0o077)   # the snapshots hold every photo and password hash: the user's alone
    # moto builds a few self-referencing URLs from this, as its own server does.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # moto answers every origin's CORS preflight unless told not to; read at its import, so set here too.
    os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"
    werkzeug_app.DISABLE_GLOBAL_CORS = True
    apply_patches((args.moto_patches or settings_or_exit(log).emulator_patches) == "on")
    app, on_load = _Dispatcher(), None
    if args.state_dir:
        app = _Persistent(app, _endpoint_state(args.state_dir), args.save_interval)
        on_load = app.start_saving if app.state.readable else None
    guarded = EndpointGuard(app, allowed_hosts(args.host, args.port), access)
    _Server(guarded, server_options(args.host, args.port), on_load).run()


def _endpoint_state(directory: Path) -> EndpointState:
    """The snapshots of the endpoint's contents; refusing to save or restore on a moto they were not tested with."""
    if not moto_is_tested():
        reason = (f"snapshots read moto's private state, known only for the tested versions; moto "
                  f"{installed_moto_version()} is not one, so the endpoint's contents are not kept")
        log.warning("%s", reason)
        return EndpointState(directory, refused=reason)
    state = EndpointState(directory)
    _long_polls_step_out(state.gate)
    return state


if __name__ == "__main__":
    main()
