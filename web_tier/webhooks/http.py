"""One webhook POST, safely: the receiver's address checked and pinned, time and size bounded, no redirects.

The host name is resolved once; every address it resolves to must be allowed (sightfleet/webhooks.py:
never link-local, where the instance metadata service answers; private and loopback ones only when
the operator allows them), and the connection goes to one of those very addresses (IPv4 first, the
next on a failed connect), so a DNS answer that changes between the check and the connection
(rebinding) cannot send the request elsewhere. TLS still checks the certificate against the host name.
A whole attempt, connect to last byte, is bounded by ATTEMPT_DEADLINE_S: a receiver that answers a
byte at a time cannot hold the deliverer.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from sightfleet.webhooks import address_refusal

CONNECT_TIMEOUT_S, READ_TIMEOUT_S, ATTEMPT_DEADLINE_S = 5.0, 10.0, 20.0
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


def resolve(host: str, port: int, allow_private: bool, allow_loopback: bool) -> list[str]:
    """The addresses of host, IPv4 first; Refused when any address it resolves to is not allowed."""
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror as exc:
        raise Refused(f"{host} does not resolve: {exc}") from None
    addresses = sorted(found, key=lambda a: (ipaddress.ip_address(a.split("%", 1)[0]).version, a))
    for address in addresses:
        refusal = address_refusal(address.split("%", 1)[0], allow_private, allow_loopback)
        if refusal:
            raise Refused(f"{host} resolves to {address}, {refusal}")
    return addresses


def _connect(addresses: list[str], port: int) -> socket.socket:
    """A connection to the first address that answers."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            error = exc
    raise error or OSError("no address")


def _exchange(open_socket: list[socket.socket], url, body: bytes, headers: dict[str, str]) -> Answer:
    """Send the POST on the connected socket open_socket[0] (TLS replaces it there) and read the answer's start."""
    host, sock = url.hostname, open_socket[0]
    if url.scheme == "https":
        sock = open_socket[0] = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    sock.settimeout(READ_TIMEOUT_S)
    connection = http.client.HTTPConnection(host, url.port, timeout=READ_TIMEOUT_S)
    connection.sock = sock
    literal = ":" in host   # an IPv6 literal goes in brackets in Host
    host_header = (f"[{host}]" if literal else host) + (f":{url.port}" if url.port else "")
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    connection.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
    for name, value in {**headers, "Host": host_header, "Content-Length": str(len(body))}.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    reply = connection.getresponse()
    detail = reply.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
    return Answer(reply.status, detail[:200])


def post(url: str, body: bytes, headers: dict[str, str], allow_private: bool, allow_loopback: bool) -> Answer:
    """POST body to url; never raises for the receiver's failures (they are in the Answer)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve(parts.hostname, port, allow_private, allow_loopback)
        sock = _connect(addresses, port)
    except Refused as exc:
        return Answer(0, f"refused: {exc}")
    except OSError as exc:
        return Answer(0, f"connect: {exc}"[:200])
    # The deadline shuts the socket in use down, which ends any read or write still waiting on it.
    open_socket = [sock]
    deadline = threading.Timer(ATTEMPT_DEADLINE_S, _shut, (open_socket,))
    deadline.start()
    try:
        return _exchange(open_socket, parts, body, headers)
    except (OSError, http.client.HTTPException) as exc:
        cut = " (deadline)" if not deadline.is_alive() else ""
        return Answer(0, f"{type(exc).__name__}: {exc}{cut}"[:200])
    finally:
        deadline.cancel()
        open_socket[0].close()


def _shut(open_socket: list[socket.socket]) -> None:
    try:
        open_socket[0].shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
