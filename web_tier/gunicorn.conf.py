"""gunicorn settings for the web tier; the bind address, processes and threads come from Settings."""
import ctypes
import os
import sys

# gunicorn reads this file before it puts the app's directory on sys.path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sightfleet.config import Settings  # noqa: E402
from web_tier import server_errors  # noqa: E402

M_MMAP_THRESHOLD = -3   # glibc's malloc.h


def _return_large_blocks_at_once() -> None:
    """Make glibc serve every large block (an argon2 run's 19 MiB) by mmap and give it back when freed.

    By default glibc raises its mmap threshold after the first such block is freed, and later ones then
    come from per-thread heaps that keep the memory: ten sign-ins on ten threads held ~190 MiB for good,
    although at most SIGHTFLEET_SIGNIN_CONCURRENCY ran at once. Setting the threshold fixes it at 128 KiB.
    Set here, in the master, so every forked worker inherits it; elsewhere than glibc nothing changes.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


_return_large_blocks_at_once()
# gunicorn's own refusals (a request line over limit_request_line, 4,094 bytes by default: a 5,000-character
# query string; headers over their limits; a malformed request) answer in the API's JSON error shape.
server_errors.install()

_settings = Settings.from_env()
# SIGHTFLEET_WEB_HOST (127.0.0.1 by default; 0.0.0.0 on AWS behind the load balancer), SIGHTFLEET_PORT or PORT.
bind = f"{_settings.web_host}:{_settings.port}"
# Threads, not processes, carry the concurrency: most requests wait on results (a CSE546 request
# blocks until recognition ends), and a waiting thread only sleeps on an event while one poller
# thread per process reads every waited-for id in one batch (web_tier/waiting.py). Waits are bounded
# per caller (SIGHTFLEET_WAITS_PER_CALLER) and for anonymous callers together (SIGHTFLEET_ANONYMOUS_WAITS),
# 80 each per process, so 16 of its 96 threads always serve other callers, and 2 processes hold the 100
# concurrent requests of the course's workload generator (one address) however unevenly they split
# (up to 80/20; 66/34 was measured).
workers = _settings.web_workers   # SIGHTFLEET_WEB_WORKERS
worker_class = "gthread"
threads = _settings.web_threads   # SIGHTFLEET_WEB_THREADS
# For gthread this is the silence after which a worker *process* counts as hung (its main loop
# keeps beating while request threads wait), so long waits are safe; kept above the longest
# synchronous wait (120 s for POST /) in case the worker class is ever changed to sync.
timeout = 150
graceful_timeout = 20
keepalive = 5
# Connections waiting for a free thread: a burst of uploads queues here instead of being refused.
backlog = 512
accesslog = "-"
# The path without its query string: a query may carry a one-time sign-in link's token (or an album
# name), and logs are read by more people, and kept longer, than a token may live.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'
# gunicorn's control socket lives at one path per user ($HOME/.gunicorn/gunicorn.ctl): several stacks
# on one machine (tests, a second PORT) would fight over it, and nothing here uses it.
control_socket_disable = True
