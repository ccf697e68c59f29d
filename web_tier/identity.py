"""Who is calling: how views read the principal that authentication puts on each request."""
from __future__ import annotations

from flask import g

from sightfleet.identity import ANONYMOUS_OWNER, Principal  # noqa: F401 - re-exported for the views

__all__ = ["ANONYMOUS_OWNER", "Principal", "current_principal"]


def current_principal() -> Principal | None:
    """The caller of the request being served, or None when it proved no identity."""
    return g.get("principal")
