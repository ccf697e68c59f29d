"""Who is calling: the principal a request acts as, shared by the web tier, the accounts service and the stack."""
from __future__ import annotations

from dataclasses import dataclass

from sightfleet.contracts import ANONYMOUS_OWNER  # noqa: F401 - the owner of uncredentialed course uploads


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the account it acts for, and how it proved it."""

    owner: str  # the account id; everything the caller uploads is owned by it
    name: str  # the account's user name, for display and logs
    admin: bool = False
    via: str = "key"  # "session" (signed cookie), "key" (Authorization: Bearer), or "anonymous"
    # The account's default features, read with the account when the caller was authenticated (None: the stack's).
    default_features: tuple[str, ...] | None = None
