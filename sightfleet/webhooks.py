"""Webhooks, the pure part: events, the signature scheme, which addresses may be called, and a delivery's fate.

Signature scheme (as Stripe's and GitHub's): every delivery carries
- `Sightfleet-Event`: the event (`image.succeeded`, `image.failed`, `image.deleted`);
- `Sightfleet-Delivery`: a stable id, the same on every attempt of one delivery (receivers drop duplicates by it);
- `Sightfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
A receiver recomputes the HMAC over the timestamp, a dot and the body exactly as received, compares in
constant time, and refuses a timestamp more than SIGNATURE_TOLERANCE_S from its clock (`verify` below is
the reference; docs/webhooks.md has a receiver).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

SUCCEEDED_EVENT, FAILED_EVENT, DELETED_EVENT = "image.succeeded", "image.failed", "image.deleted"
EVENTS = (SUCCEEDED_EVENT, FAILED_EVENT, DELETED_EVENT)
SIGNATURE_HEADER, EVENT_HEADER, DELIVERY_HEADER = "Sightfleet-Signature", "Sightfleet-Event", "Sightfleet-Delivery"
SIGNATURE_TOLERANCE_S = 300
MAX_URL_LENGTH = 2000
# Attempts after the first, spread over a day and more (32 h): a receiver down for a day still gets it.
BACKOFF_S = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800, 28800)


class WebhookError(ValueError):
    """A webhook URL or event list that cannot be accepted; the message says why."""


def event_of(status: str) -> str | None:
    """The event a result's status announces (None: not final, nothing to announce)."""
    return {"SUCCEEDED": SUCCEEDED_EVENT, "FAILED": FAILED_EVENT, "DELETED": DELETED_EVENT}.get(status)


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The Sightfleet-Signature value for this body, signed now (or at `timestamp`)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, now: float | None = None,
           tolerance_s: int = SIGNATURE_TOLERANCE_S) -> bool:
    """Whether a received delivery's signature header is good and recent (the receiver's side)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if not re.fullmatch(r"[0-9a-f]{64}", parts.get("v1", "")):
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance_s:
        return False
    expected = signature_header(secret, body, stamp).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def delivery_id(event: str, image_id: str, target: str, occurred_at: str) -> str:
    """One delivery's stable id: the same for every attempt and for a redelivered response message."""
    return "dlv_" + hashlib.sha256(f"{event}|{image_id}|{target}|{occurred_at}".encode()).hexdigest()[:24]


def check_url(url: str, local: bool) -> str:
    """The URL when it may receive webhooks: https (http only to loopback in local mode), no credentials in it."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise WebhookError(f"a webhook URL is 1 to {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or any(c.isspace() for c in url):
        raise WebhookError("a webhook URL is https://host/path")
    try:
        port = parts.port
    except ValueError:   # out of range, or not a number
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise WebhookError("a webhook URL's port is 1 to 65535")
    if parts.username or parts.password:
        raise WebhookError("a webhook URL may not carry a user name or password; the signature authenticates")
    if parts.scheme == "http" and not (local and _is_loopback_name(parts.hostname)):
        raise WebhookError("webhooks are delivered over HTTPS only (plain http to loopback in local mode)")
    literal = _literal_ip(parts.hostname)
    if literal is not None:
        refusal = address_refusal(literal, allow_private=False, allow_loopback=local)
        if refusal:
            raise WebhookError(f"a webhook cannot go to {parts.hostname}: {refusal}")
    return url


def check_events(events: object) -> tuple[str, ...]:
    if not isinstance(events, (list, tuple)) or not events or any(e not in EVENTS for e in events):
        raise WebhookError(f"events is a non-empty list of {', '.join(EVENTS)}")
    return tuple(sorted(set(events)))


def _is_loopback_name(host: str) -> bool:
    literal = _literal_ip(host)
    return host == "localhost" or (literal is not None and literal.is_loopback)


def _literal_ip(host: str):
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


# Never called, whatever the operator allows: where cloud metadata services answer.
_METADATA_NETS = tuple(ipaddress.ip_network(net) for net in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::/32"))
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, Teredo's client, NAT64), if any."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(address, allow_private: bool, allow_loopback: bool) -> str | None:
    """Why a resolved address may not be called (None: it may): the metadata service never, private nets rarely."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return address_refusal(inner, allow_private, allow_loopback)
        if ip in _SITE_LOCAL:
            return "a site-local address"
    if any(ip in net for net in _METADATA_NETS if net.version == ip.version):
        return "a link-local or metadata-service address (never called)"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "not a unicast address"
    if ip.is_private or not ip.is_global:
        return None if allow_private else "a private address (SIGHTFLEET_WEBHOOK_ALLOW_PRIVATE=1 allows them)"
    return None


@dataclass(frozen=True)
class Fate:
    """What becomes of a delivery after an attempt: done, retried after `delay_s`, or given up."""

    done: bool
    delay_s: int | None = None
    give_up: bool = False


def fate(succeeded: bool, attempt: int, backoff_s: tuple[int, ...] = BACKOFF_S) -> Fate:
    """A delivery's next step after its attempt number `attempt` (0 = the first) succeeded or not."""
    if succeeded:
        return Fate(done=True)
    if attempt >= len(backoff_s):
        return Fate(done=True, give_up=True)
    return Fate(done=False, delay_s=backoff_s[attempt])
