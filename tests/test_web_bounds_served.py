"""The web tier's bounds as it is served: one real gunicorn process on the real local endpoint, measured from /proc.

What only the served process can show: how much memory a burst of sign-ins takes, whether a huge body
is refused before gunicorn and the app read it, and what a client gets when gunicorn itself refuses.
"""
from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import pytest
import requests

from sightfleet.resources import Resources
from devstack.stack import answers
from tests.support import REPO, descendants, free_port, jpeg_bytes, wait_for
from web_tier.accounts import Accounts
from sightfleet.accounts import ARGON2_MEMORY_KIB

PASSWORD = "a long enough password"
SIGN_INS = 30
SLOTS = 2   # SIGHTFLEET_SIGNIN_CONCURRENCY of the served process
MIB = 2**20
HUGE = 100 * MIB


@pytest.fixture(scope="module")
def served(moto_server, tmp_path_factory):
    """(url, settings, pid of the one gunicorn worker) on a fresh prefix; 32 threads, so 30 requests run at once."""
    from sightfleet.config import Settings
    from sightfleet.resources import provision
    from tests.support import unique_prefix
    settings = Settings(endpoint_url=moto_server, prefix=unique_prefix())
    provision(settings)
    port = free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": settings.endpoint_url, "SIGHTFLEET_PREFIX": settings.prefix,
           "PORT": str(port), "SIGHTFLEET_WEB_WORKERS": "1", "SIGHTFLEET_WEB_THREADS": "32",
           "SIGHTFLEET_SIGNIN_CONCURRENCY": str(SLOTS), "SIGHTFLEET_SECRET_KEY": "k" * 32,
           "SIGHTFLEET_ADDRESS_RATE_LIMIT": "100000/minute", "SIGHTFLEET_RATE_LIMIT": "",
           "SIGHTFLEET_ANONYMOUS_RATE_LIMIT": "", "PYTHONPATH": str(REPO)}
    log_path = tmp_path_factory.mktemp("served") / "web.log"
    with open(log_path, "w") as log:
        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "web_tier/gunicorn.conf.py",
                                "web_tier.wsgi:app"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url + "/healthz", ok_only=True), 60, what="gunicorn")
        [worker] = descendants(web.pid)
        yield url, settings, worker
    finally:
        web.terminate()
        web.wait(timeout=30)


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(found.group(1)) * 1024


def signin_form(url: str) -> tuple[requests.Session, str]:
    """A browser that has the sign-in form: its cookies and the form's CSRF token."""
    browser = requests.Session()
    page = browser.get(url + "/signin", timeout=10).text
    return browser, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_thirty_concurrent_sign_ins_are_bounded_in_memory_and_answered_503_beyond_the_bound(served):
    url, settings, worker = served
    accounts = Accounts(Resources.connect(settings).accounts)
    names = [f"burst{i}" for i in range(SIGN_INS)]
    for name in names:
        accounts.create(name, password=PASSWORD)
    warm, token = signin_form(url)   # one sign-in first: argon2 and the app's code are loaded before measuring
    assert warm.post(url + "/signin", data={"name": names[0], "password": PASSWORD, "csrf_token": token},
                     allow_redirects=False, timeout=30).status_code == 302
    browsers = [signin_form(url) for _ in names]
    before = peak_rss(worker)
    start = Barrier(SIGN_INS)

    def sign_in(i: int) -> requests.Response:
        browser, token = browsers[i]
        start.wait()
        return browser.post(url + "/signin", data={"name": names[i], "password": PASSWORD, "csrf_token": token},
                            allow_redirects=False, timeout=60)

    with ThreadPoolExecutor(SIGN_INS) as pool:
        replies = list(pool.map(sign_in, range(SIGN_INS)))
    grown = peak_rss(worker) - before
    statuses = [reply.status_code for reply in replies]
    busy = [reply for reply in replies if reply.status_code == 503]
    print(f"30 concurrent sign-ins: {statuses.count(302)} signed in, {len(busy)} answered 503; "
          f"the worker's peak RSS grew {grown / MIB:.1f} MiB")
    assert set(statuses) <= {302, 503} and busy, statuses
    assert all(reply.headers["Retry-After"] == "1" and "BUSY" in reply.text for reply in busy)
    # At most SLOTS argon2 runs at once, each ARGON2_MEMORY_KIB; the rest of the growth is threads and buffers.
    assert grown < SLOTS * ARGON2_MEMORY_KIB * 1024 + 48 * MIB, f"peak RSS grew {grown / MIB:.1f} MiB"


def send_streaming(url: str, path: str, headers: dict[str, str], chunks) -> tuple[int, bytes, int, float]:
    """Send a request whose body comes from a generator, stopping once the server answers or hangs up.

    Returns (status, body, bytes of body sent, seconds): the test never holds the body in memory.
    """
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n")
    sent = 0
    readable = select.poll()   # not select(): late in a long test session a descriptor can be past 1024
    readable.register(sock, select.POLLIN)
    try:
        for chunk in chunks:
            if readable.poll(0):
                break   # the answer came (or the connection closed): stop sending
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = b""
    sock.settimeout(10)
    try:
        while b"\r\n\r\n" not in reply or len(reply) < reply.index(b"\r\n\r\n") + 4 + _length(reply):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    except (ConnectionResetError, socket.timeout):
        pass
    sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, sent, time.monotonic() - started


def _length(reply: bytes) -> int:
    found = re.search(rb"content-length: *(\d+)", reply, re.I)
    return int(found.group(1)) if found else 0


def zeros(total: int, size: int = 64 * 1024):
    for _ in range(total // size):
        yield bytes(size)


def chunked(total: int, size: int = 64 * 1024):
    for chunk in zeros(total, size):
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.parametrize("path, content_type, framing, status, code", [
    ("/signin", "application/x-www-form-urlencoded", "declared", 413, "TOO_LARGE"),
    ("/signin", "application/x-www-form-urlencoded", "chunked", 411, "LENGTH_REQUIRED"),
    ("/", "multipart/form-data; boundary=x", "declared", 413, "TOO_LARGE"),
    ("/", "multipart/form-data; boundary=x", "chunked", 413, "TOO_LARGE"),
])
def test_a_100_mib_body_is_refused_before_it_is_read(served, path, content_type, framing, status, code):
    url, _, worker = served
    before = peak_rss(worker)
    if framing == "declared":
        headers, body = {"Content-Type": content_type, "Content-Length": str(HUGE)}, zeros(HUGE)
    else:
        headers, body = {"Content-Type": content_type, "Transfer-Encoding": "chunked"}, chunked(HUGE)
    answered, answer, sent, seconds = send_streaming(url, path, headers, body)
    grown = peak_rss(worker) - before
    print(f"{path} {framing}: {answered} after {sent / MIB:.1f} MiB sent, {seconds:.2f} s, "
          f"peak RSS +{grown / MIB:.1f} MiB")
    assert answered == status and json.loads(answer)["error"]["code"] == code
    assert sent < 20 * MIB and seconds < 10   # the server stopped taking it long before 100 MiB
    assert grown < 16 * MIB


def test_gunicorns_own_refusal_of_a_long_query_string_is_the_apis_json_error(served):
    url, _, _ = served
    reply = requests.get(url + "/api/images?album=" + "a" * 5000, timeout=10)
    assert reply.status_code == 414 and reply.headers["Content-Type"] == "application/json"
    assert reply.json()["error"]["code"] == "URI_TOO_LONG" and "4,094" in reply.json()["error"]["message"]
    headers = requests.get(url + "/healthz", headers={"X-Long": "b" * 9000}, timeout=10)
    assert headers.status_code == 431 and headers.json()["error"]["code"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"


def test_an_image_upload_still_gets_through(served):
    url, settings, _ = served
    _, issued = Accounts(Resources.connect(settings).accounts).create("uploader")
    reply = requests.post(url + "/api/images", data=jpeg_bytes(scale=0.2), timeout=30,
                          headers={"Content-Type": "image/jpeg", "Authorization": f"Bearer {issued.key}"})
    assert reply.status_code == 202, reply.text
