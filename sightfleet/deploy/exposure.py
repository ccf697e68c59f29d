"""Who may reach a deployed stack: HTTPS for anyone, or plain HTTP only when asked and then only for the deployer.

Plain HTTP carries passwords, session cookies and API keys in clear, so scripts/deploy refuses a stack
without a certificate unless told `--allow-plain-http`, and then opens it to the deployer's own address
unless `--client-cidr` says otherwise. That address is found without asking any service on the
internet: a UDP socket "connected" to a public address sends nothing, but the kernel picks the source
address of the route it would take, which is this machine's address towards the internet. Behind a NAT
(a home router, a corporate proxy, an EC2 instance) that address is private and is not the one the load
balancer would see: then nothing is guessed and the deployer is asked for `--client-cidr`.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from sightfleet.errors import SightfleetError

WORLD = "0.0.0.0/0"
# Any public address will do: nothing is sent to it (TEST-NET-3, RFC 5737, routed like any other by the default route).
_PROBE = ("203.0.113.1", 9)
_WHERE_TO_LOOK = ("find your public address (your router, or `curl https://checkip.amazonaws.com` run by you) "
                  "and pass --client-cidr ADDRESS/32")


class Refused(SightfleetError):
    """The deploy would expose the stack more than asked; the message says what to pass instead."""


@dataclass(frozen=True)
class Exposure:
    """The CIDR the load balancer accepts, and a line that tells the deployer what that means."""

    client_cidr: str
    notice: str
    plain_http: bool


def own_address(probe: tuple[str, int] = _PROBE) -> str | None:
    """This machine's source address towards probe (default: the internet), found from the routing table alone."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.connect(probe)   # UDP: no packet leaves; the kernel only chooses the route and source address
            return udp.getsockname()[0]
    except OSError:
        return None   # no route towards it (an offline machine)


def decide(certificate_arn: str, client_cidr: str, allow_plain_http: bool, address: str | None) -> Exposure:
    """Who may connect, from the deploy options and the deployer's address; Refused when it would be unsafe."""
    if client_cidr:
        _check_cidr(client_cidr)
    if certificate_arn:
        cidr = client_cidr or WORLD
        return Exposure(cidr, f"HTTPS with the certificate (HTTP redirects to HTTPS), open to {cidr}", False)
    if not allow_plain_http:
        raise Refused("no --certificate-arn: a plain-HTTP stack carries passwords, session cookies and API keys "
                      "in clear. Pass an ACM certificate, or --allow-plain-http to deploy plain HTTP open to "
                      "your own address only (or to --client-cidr)")
    if client_cidr:
        anyone = " (anyone: as asked)" if client_cidr == WORLD else ""
        return Exposure(client_cidr, f"PLAIN HTTP, open to {client_cidr}{anyone}", True)
    if address is None:
        raise Refused(f"--allow-plain-http without --client-cidr, and this machine has no route to the internet "
                      f"to tell its address from: {_WHERE_TO_LOOK}")
    if not ipaddress.ip_address(address).is_global:
        raise Refused(f"--allow-plain-http without --client-cidr, and this machine's address {address} is private "
                      f"(the load balancer would see your NAT's public address instead): {_WHERE_TO_LOOK}")
    return Exposure(f"{address}/32", f"PLAIN HTTP, open to your address {address}/32 only (found from this "
                                      "machine's route to the internet; --client-cidr changes it)", True)


def _check_cidr(cidr: str) -> None:
    try:
        ipaddress.IPv4Network(cidr, strict=False)
    except ValueError as exc:
        raise Refused(f"--client-cidr {cidr!r} is not an IPv4 network such as 203.0.113.7/32 ({exc})") from None
