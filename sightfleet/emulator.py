"""The local AWS endpoint: moto's WSGI application served by gunicorn, with keep-alive.

`python -m sightfleet.emulator --port 4566` is what `scripts/run` and the tests start.
Why not moto's own `python -m moto.server`: it runs werkzeug's development server, which
closes the connection after every response and starts a thread per request, and moto's
dispatcher works out each request's service by scanning its table of URL patterns (and
listing its own package folder) under one global lock. Served here, connections stay open
and each Host header's service is looked up once; a call then costs the emulator a fifth to
two-fifths less CPU and takes 15-33% less time (`benchmarks/emulator.py`). It is still moto: the
same application, the same state, the same /moto-api/. One worker process, because moto
keeps everything in that process's memory.
"""
from __future__ import annotations

import argparse
import os

from gunicorn.app.base import BaseApplication
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

# Enough for every long poll of a full local fleet at once; idle keep-alive connections
# wait in gunicorn's poller and hold no thread.
THREADS = 128


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which of its backends serves each Host header."""

    def __init__(self):
        super().__init__(create_backend_app)
        self._backend_by_host: dict = {}

    def get_backend_for_host(self, host):
        # Called under moto's lock. The answer depends only on the host and moto's own tables,
        # which do not change while the server runs.
        if host not in self._backend_by_host:
            self._backend_by_host[host] = super().get_backend_for_host(host)
        return self._backend_by_host[host]


class _Server(BaseApplication):
    """gunicorn with its settings given here rather than read from a command line or file."""

    def __init__(self, app, options: dict):
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._app


def server_options(host: str, port: int) -> dict:
    """gunicorn settings for the emulator: one process, threads, quick to stop."""
    return {"bind": f"{host}:{port}", "workers": 1, "worker_class": "gthread", "threads": THREADS,
            "keepalive": 30, "graceful_timeout": 2, "loglevel": "warning"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve moto's AWS emulator on loopback.")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args(argv)
    # moto builds a few self-referencing URLs from this, as its own server does.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    _Server(_Dispatcher(), server_options(args.host, args.port)).run()


if __name__ == "__main__":
    main()
