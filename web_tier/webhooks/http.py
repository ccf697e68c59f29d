"""One webhook POST, safely: the receiver's address checked and pinned, time and size bounded, no redirects.

The host name is resolved once; every address it resolves to must be allowed (sightfleet/webhooks.py:
never link-local, where the instance metadata service answers; private and loopback ones only when
the operator allows them), and the connection goes to that very address, so a DNS answer that changes
between the check and the connection (rebinding) cannot send the request elsewhere. TLS still checks
the certificate against the host name.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from sightfleet.webhooks import address_refusal

CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5.0, 10.0
MAX_ANSWER_BYTES = 4096   # of the receiver's answer, kept for the delivery log


@dataclass(frozen=True)
class Answer:
    """What one attempt got: the status (0 when none came) and an error or the start of the body."""

    status: int
    detail: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Refused(Exception):
    """The receiver's address may not be called."""


def resolve(host: str, port: int, allow_private: bool, allow_loopback: bool) -> str:
    """One allowed address of host; Refused when any address it resolves to is not allowed."""
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror as exc:
        raise Refused(f"{host} does not resolve: {exc}") from None
    for address in sorted(found):
        refusal = address_refusal(address.split("%", 1)[0], allow_private, allow_loopback)
        if refusal:
            raise Refused(f"{host} resolves to {address}, {refusal}")
    return sorted(found)[0]


def post(url: str, body: bytes, headers: dict[str, str], allow_private: bool, allow_loopback: bool) -> Answer:
    """POST body to url; never raises for the receiver's failures (they are in the Answer)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = resolve(parts.hostname, port, allow_private, allow_loopback)
    except Refused as exc:
        return Answer(0, f"refused: {exc}")
    tls = {"server_hostname": parts.hostname, "assert_hostname": parts.hostname} if parts.scheme == "https" else {}
    pool_class = urllib3.HTTPSConnectionPool if parts.scheme == "https" else urllib3.HTTPConnectionPool
    pool = pool_class(address, port, timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
                      retries=False, maxsize=1, **tls)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.hostname + (f":{parts.port}" if parts.port else "")
    try:
        reply = pool.urlopen("POST", path, body=body, headers={**headers, "Host": host_header}, redirect=False,
                             preload_content=False, assert_same_host=False)
        detail = reply.read(MAX_ANSWER_BYTES, decode_content=False).decode("utf-8", "replace")
        reply.release_conn()
        return Answer(reply.status, detail[:200])
    except urllib3.exceptions.HTTPError as exc:
        return Answer(0, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        pool.close()
