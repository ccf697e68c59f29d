"""The nudge telling the local EC2 host that the fleet changed, so that it looks at once, not at its next poll.

On a local endpoint the hypervisor is the local EC2 host (devstack/local_host.py), which polls DescribeInstances.
Each launch, start, stop or terminate made through a Fleet built with `fleet_notifier` also sends one datagram on
an abstract Unix socket (nothing on disk). Nobody listening (no host yet, or another machine) costs nothing.

It lives on the shared floor, not in devstack/, because the senders are the tiers' own processes (the controller
launches and stops workers, a worker stops itself) and tiers never import devstack; the EC2 adapter itself only
calls the hook it is given, so it knows nothing of local hosts.
"""
from __future__ import annotations

import hashlib
import socket
from functools import partial
from typing import Callable

from sightfleet.config import Settings


def local_host_address(settings: Settings) -> str:
    """The abstract Unix socket on which the local EC2 host of this endpoint and stack listens for nudges."""
    digest = hashlib.sha1(f"{settings.endpoint_url}|{settings.prefix}".encode()).hexdigest()[:16]
    return f"\0sightfleet-local-host-{digest}"


def nudge_local_host(address: str) -> bool:
    """Tell the local EC2 host that the fleet changed; False when none listens (its poll finds it anyway)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.sendto(b"changed", address)
            return True
        except OSError:   # no listener (ECONNREFUSED), or its buffer full of nudges already (EAGAIN)
            return False


def fleet_notifier(settings: Settings) -> Callable[[], object] | None:
    """What a Fleet calls after each change: a nudge to the local host on a local endpoint, nothing on AWS."""
    return partial(nudge_local_host, local_host_address(settings)) if settings.is_local else None
