"""Registering webhook endpoints and per-request callbacks: what the API, the page and the CLI share.

An endpoint's secret signs its deliveries (sightfleet/webhooks.py); like an access key's, it is shown
once and stored only sealed under the credentials key, since signing needs the secret itself. Per-request
callbacks (`POST /api/images` with `callback_url`) are signed with the account's callback secret.
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

from sightfleet.aws.webhooks import WebhookTable
from sightfleet.contracts import iso
from sightfleet.secretbox import SecretBox
from sightfleet.webhooks import WebhookError, check_events, check_url

log = logging.getLogger(__name__)
MAX_ENDPOINTS = 10
SECRET_PREFIX = "whsec_"
_PUBLIC = ("hook_id", "url", "events", "status", "disabled_reason", "failures", "created_at")


@dataclass(frozen=True)
class IssuedHook:
    """A new endpoint and its signing secret, shown once."""

    hook: dict
    secret: str


def public(hook: dict) -> dict:
    """An endpoint as its owner sees it: no sealed secret; its deliveries newest first."""
    view = {name: hook.get(name) for name in _PUBLIC}
    view["deliveries"] = sorted(({"delivery_id": d, **entry} for d, entry in (hook.get("log") or {}).items()),
                                key=lambda entry: entry.get("at", ""), reverse=True)
    return view


class Webhooks:
    """Endpoints and callbacks of accounts, over the webhook table."""

    def __init__(self, table: WebhookTable, box: SecretBox | None, local: bool):
        self.table, self._box, self._local = table, box, local

    def _sealer(self) -> SecretBox:
        if self._box is None:
            raise WebhookError("webhooks need a credentials key (SIGHTFLEET_CREDENTIALS_KEY or its secret) to keep "
                               "their signing secrets")
        return self._box

    def register(self, account_id: str, url: str, events: object) -> IssuedHook:
        """A new endpoint for the account; WebhookError when the URL, the events or the count are refused."""
        url, events = check_url(url, self._local), check_events(events)
        if len(self.table.hooks_of(account_id)) >= MAX_ENDPOINTS:
            raise WebhookError(f"an account has at most {MAX_ENDPOINTS} webhook endpoints; delete one first")
        hook_id, secret = "wh_" + secrets.token_hex(8), SECRET_PREFIX + secrets.token_urlsafe(32)
        hook = {"hook_id": hook_id, "account_id": account_id, "url": url, "events": list(events),
                "status": "active", "disabled_reason": "", "failures": 0, "created_at": iso(time.time()),
                "secret_sealed": self._sealer().seal(secret, bound_to=hook_id), "log": {}}
        self.table.put_hook(hook)
        log.info("account %s registered webhook %s for %s", account_id, hook_id, ", ".join(events))
        return IssuedHook(public(hook), secret)

    def hooks(self, account_id: str) -> list[dict]:
        return [public(hook) for hook in self.table.hooks_of(account_id)]

    def hook(self, account_id: str, hook_id: str) -> dict | None:
        """One of the account's endpoints with its delivery log; None for an unknown one or another owner's."""
        found = self.table.get_hook(hook_id) if hook_id.startswith("wh_") else None
        return public(found) if found and found["account_id"] == account_id else None

    def remove(self, account_id: str, hook_id: str) -> bool:
        return self.hook(account_id, hook_id) is not None and self.table.delete_hook(hook_id)

    def enable(self, account_id: str, hook_id: str) -> bool:
        """Turn a disabled endpoint back on (its failures start over); False when it is not the account's."""
        if self.hook(account_id, hook_id) is None:
            return False
        self.table.set_status(hook_id, "active")
        log.info("webhook %s enabled again by its owner", hook_id)
        return True

    def forget_account(self, account_id: str) -> int:
        """Remove every endpoint and the callback secret of an account being deleted; how many endpoints went."""
        hooks = self.table.hooks_of(account_id)
        for hook in hooks:
            self.table.delete_hook(hook["hook_id"])
        self.table.delete_callback_secret(account_id)
        if hooks:
            log.info("removed the %d webhook endpoints of account %s", len(hooks), account_id)
        return len(hooks)

    def new_callback_secret(self, account_id: str) -> str:
        """A new secret for the account's per-request callbacks (the old one stops signing at once)."""
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        self.table.put_callback_secret(account_id, self._sealer().seal(secret, bound_to=f"callback:{account_id}"))
        return secret

    def note_callback(self, image_id: str, account_id: str, url: str) -> None:
        """Remember the callback an accepted upload asked for (its URL passed check_callback)."""
        self.table.put_callback(image_id, account_id, url)

    def check_callback(self, account_id: str, url: str) -> str:
        """The callback URL when an upload may name it (checked before the upload is accepted)."""
        if self.table.callback_secret(account_id) is None:
            raise WebhookError("a callback_url needs a callback secret first: POST /api/webhooks/callback-secret")
        return check_url(url, self._local)
