"""Accounts, API keys and one-time sign-in links: what the sign-in pages, the CLI and the stack share.

Passwords are hashed with argon2id (argon2-cffi), which is slow on purpose because a password is
guessable, with the OWASP Password Storage Cheat Sheet's first recommended configuration (m=19 MiB,
t=2, p=1): argon2-cffi's default (64 MiB, 4 lanes) let 30 anonymous sign-ins take 1.7 GiB. A stored
hash with other parameters is rehashed on the next successful sign-in. API keys and link tokens are
256-bit random strings (secrets.token_urlsafe(32)): no guess or dictionary helps against them, so a
plain SHA-256 of the key is enough to keep the table useless to whoever reads it, and it can be
looked up directly (the hash is the item's key) at the cost of one hash per request rather than an
argon2 run. The plain key is shown once and never stored.

Access keys (an id and a secret, for clients that sign with AWS Signature V4) cannot be hashed: SigV4
needs the secret itself to check a signature. Their secrets are stored sealed under the credentials
key (sightfleet/secretbox.py), shown once, and opened only to check a request.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sightfleet.contracts import epoch as stamp_epoch, iso
from sightfleet.errors import ConditionFailed, SightfleetError
from sightfleet.features import stored_features
from sightfleet.identity import ANONYMOUS_OWNER, Principal
from sightfleet.interfaces import AccountStore
from sightfleet.secretbox import SealError, SecretBox

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
KEY_PREFIX = "sfk_"
# An access key id looks like AWS's (20 upper-case letters and digits), so every SDK takes it as one.
ACCESS_KEY_PREFIX = "SFAK"
LINK_TTL_S = 15 * 60
MIN_PASSWORD_LENGTH = 8
# OWASP: "Argon2id with a minimum configuration of 19 MiB of memory, an iteration count of 2, and 1 degree of
# parallelism". memory_cost counts KiB.
ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM = 19 * 1024, 2, 1
_hasher = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM)
# A key's last use is written at most this often (a write on every request would double the table's load).
LAST_USED_EVERY_S = 300
# Verified against for names that have no account (or no password), so a wrong name costs as long as a wrong password.
_UNKNOWN_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(SightfleetError):
    """A request about accounts that cannot be done as asked (a taken name, an unknown one); the message says why."""


@dataclass(frozen=True)
class IssuedKey:
    """A new API key: its public id, and the key itself, which is shown once and kept nowhere."""

    key_id: str
    key: str


@dataclass(frozen=True)
class IssuedAccessKey:
    """A new SigV4 access-key pair; the secret is shown once and stored only sealed."""

    key_id: str
    secret: str


def new_access_key_id() -> str:
    """SFAK and 16 random base32 characters (80 bits): unguessable, and shaped like an AWS key id."""
    return ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode()


def is_access_key_id(key_id: str) -> bool:
    return key_id.startswith(ACCESS_KEY_PREFIX) and len(key_id) == 20


def secret_hash(secret: str) -> str:
    """The SHA-256 under which a high-entropy key or token is stored (see the module docstring)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def normalised_name(name: str) -> str:
    """The user name as stored (lower case); AccountError unless it is a valid name."""
    name = name.strip().lower()
    if not NAME_RE.match(name):
        raise AccountError("a user name is 1-64 lower-case letters, digits, dots, dashes or underscores, "
                           "starting with a letter or digit")
    if name == ANONYMOUS_OWNER:
        raise AccountError(f"{ANONYMOUS_OWNER!r} is the built-in owner of the open course endpoint's images")
    return name


def _new_epoch() -> str:
    return secrets.token_hex(8)


def _principal(account: dict, via: str) -> Principal:
    return Principal(owner=account["account_id"], name=account["name"], admin=bool(account.get("admin")), via=via,
                     default_features=stored_features(account.get("default_features")))


class Accounts:
    """The operations on accounts, over one AccountStore."""

    def __init__(self, store: AccountStore, box: SecretBox | None = None):
        self.store = store
        self._box = box   # None: access keys can be neither issued nor checked (no credentials key)

    def create(self, name: str, admin: bool = False, password: str | None = None) -> tuple[dict, IssuedKey]:
        """A new account and its first API key; AccountError when the name is taken."""
        name = normalised_name(name)
        now = iso(time.time())
        account = {"account_id": uuid.uuid4().hex[:16], "name": name, "admin": admin,
                   "password_hash": self._hash_password(password) if password else "",
                   "session_epoch": _new_epoch(), "created_at": now, "password_changed_at": now}
        try:
            self.store.put_account(account)
        except ConditionFailed:
            raise AccountError(f"an account named {name!r} exists already") from None
        log.info("created account %s (%s)%s", name, account["account_id"], " as admin" if admin else "")
        return account, self.issue_key(account, "created with the account")

    def get(self, name: str) -> dict:
        """The account of this name; AccountError when there is none."""
        account = self.store.get_account(name.strip().lower())
        if account is None:
            raise AccountError(f"no account named {name!r}")
        return account

    def all(self) -> list[dict]:
        return self.store.accounts()

    def has_admin(self) -> bool:
        return any(account.get("admin") for account in self.store.accounts())

    def set_password(self, name: str, password: str) -> None:
        """A new password; every session of the account ends with it (a stolen cookie among them)."""
        self._update(name, password_hash=self._hash_password(password), session_epoch=_new_epoch(),
                     password_changed_at=iso(time.time()))

    def keys_since_password_change(self, account: dict) -> list[dict]:
        """The account's keys and access keys made since its password last changed (a thief's among them, if any)."""
        since = account.get("password_changed_at") or account.get("created_at", "")
        return [key for key in [*self.keys(account), *self.access_keys(account)] if key["created_at"] >= since]

    def end_sessions(self, name: str) -> None:
        """Sign the account out everywhere: every session cookie it has stops at its next request."""
        self._update(name, session_epoch=_new_epoch())

    def session_epoch(self, principal: Principal) -> str:
        """What a new session of this account records, to be compared on each request (see end_sessions)."""
        return self.get(principal.name).get("session_epoch", "")

    def _update(self, name: str, **changes) -> None:
        account = self.get(name)
        try:
            self.store.update_account({**account, **changes})
        except ConditionFailed:
            raise AccountError(f"no account named {name!r}") from None

    def lock_out(self, name: str) -> int:
        """Revoke every key of the account and end its sessions (it is being deleted); how many keys went."""
        removed = self._delete_keys(self.get(name))
        self.end_sessions(name)
        return removed

    def set_pending_purge(self, name: str, image_ids: list[str]) -> None:
        """Remember images whose deletion did not finish, for the next `delete` of the account to finish first."""
        self._update(name, pending_purge=sorted(set(image_ids)))

    def delete(self, name: str) -> int:
        """Remove an account and every key it has; returns how many keys went with it."""
        account = self.get(name)
        self.store.delete_account(account["name"])
        removed = self._delete_keys(account)
        log.info("deleted account %s and its %d keys", account["name"], removed)
        return removed

    def _delete_keys(self, account: dict) -> int:
        keys = self.store.keys_of(account["account_id"])
        for key in keys:
            self.store.delete_key(key["key_hash"])
        access_keys = self.store.access_keys_of(account["account_id"])
        for key in access_keys:
            self.store.delete_access_key(key["key_id"])
        return len(keys) + len(access_keys)

    def set_keep_api_images(self, name: str, keep: bool) -> None:
        """Whether the photos of the account's Rekognition calls stay in its gallery (default: deleted)."""
        self._update(name, keep_api_images=keep)

    def set_default_features(self, name: str, features: tuple[str, ...] | None) -> None:
        """What the account's uploads run when they name no features (None: the stack's default)."""
        self._update(name, default_features=list(features) if features else None)

    def issue_access_key(self, account: dict, label: str = "") -> IssuedAccessKey:
        """A new access-key pair for SigV4 clients; AccountError when this stack has no credentials key."""
        if self._box is None:
            raise AccountError("access keys need a credentials key (SIGHTFLEET_CREDENTIALS_KEY or "
                               "SIGHTFLEET_CREDENTIALS_KEY_SECRET); scripts/run and scripts/deploy set one")
        issued = IssuedAccessKey(new_access_key_id(), secrets.token_urlsafe(30))
        self.store.put_access_key(issued.key_id, {
            "key_id": issued.key_id, "account_id": account["account_id"], "name": account["name"],
            "label": label[:100], "created_at": iso(time.time()),
            "secret_sealed": self._box.seal(issued.secret, bound_to=issued.key_id)})
        log.info("issued access key %s to %s", issued.key_id, account["name"])
        return issued

    def access_keys(self, account: dict) -> list[dict]:
        """An account's access keys without their secrets (id, label, created_at), oldest first."""
        return [{k: key[k] for k in ("key_id", "label", "created_at")}
                for key in self.store.access_keys_of(account["account_id"])]

    def by_access_key(self, key_id: str) -> tuple[Principal, str] | None:
        """Who an access key acts for and its secret; None when unknown, revoked, unopenable or its account gone."""
        if self._box is None or not is_access_key_id(key_id):
            return None
        found = self.store.get_access_key(key_id)
        if found is None:
            return None
        try:
            secret = self._box.open(found["secret_sealed"], bound_to=key_id)
        except SealError:
            log.error("access key %s does not open with this stack's credentials key (was the key changed?)", key_id)
            return None
        principal = self._live(found["name"], found["account_id"], "access-key")
        return None if principal is None else (principal, secret)

    def issue_key(self, account: dict, label: str = "") -> IssuedKey:
        issued = IssuedKey(secrets.token_hex(6), KEY_PREFIX + secrets.token_urlsafe(32))
        self.store.put_key(secret_hash(issued.key), {
            "key_id": issued.key_id, "account_id": account["account_id"], "name": account["name"],
            "label": label[:100], "created_at": iso(time.time())})
        log.info("issued key %s to %s", issued.key_id, account["name"])
        return issued

    def keys(self, account: dict) -> list[dict]:
        """An account's keys without their hashes (id, label, created_at, last_used_at), oldest first."""
        return [{k: key.get(k) for k in ("key_id", "label", "created_at", "last_used_at")}
                for key in self.store.keys_of(account["account_id"])]

    def revoke(self, key_id: str, account: dict | None = None) -> bool:
        """Revoke a key or access key by its id (only among `account`'s when given); False when there is none."""
        if is_access_key_id(key_id):
            return self._revoke_access_key(key_id, account)
        if account is None:
            key_hash = self.store.key_hash_of(key_id)
        else:
            key_hash = next((k["key_hash"] for k in self.store.keys_of(account["account_id"])
                             if k["key_id"] == key_id), None)
        revoked = key_hash is not None and self.store.delete_key(key_hash)
        if revoked:
            log.info("revoked key %s", key_id)
        return revoked

    def _revoke_access_key(self, key_id: str, account: dict | None) -> bool:
        found = self.store.get_access_key(key_id)
        if found is None or (account is not None and found["account_id"] != account["account_id"]):
            return False
        revoked = self.store.delete_access_key(key_id)
        if revoked:
            log.info("revoked access key %s", key_id)
        return revoked

    def by_key(self, key: str) -> Principal | None:
        """Who this API key acts for; None when it is unknown, revoked, or its account is gone."""
        key_hash = secret_hash(key)
        found = self.store.get_key(key_hash)
        if found is None:
            return None
        principal = self._live(found["name"], found["account_id"], "key")
        if principal is not None:
            self._note_use(key_hash, found)
        return principal

    def _note_use(self, key_hash: str, key: dict) -> None:
        """Record when the key was last used, to the nearest LAST_USED_EVERY_S (a failed write only logs)."""
        now = time.time()
        last = key.get("last_used_at")
        if last and now - (stamp_epoch(last) or 0) < LAST_USED_EVERY_S:
            return
        try:
            self.store.touch_key(key_hash, iso(now))
        except SightfleetError as exc:
            log.warning("could not record the use of key %s: %s", key.get("key_id"), exc)

    def by_session(self, name: str, account_id: str, epoch: str) -> Principal | None:
        """Who a session cookie names, if that account still exists (not one deleted and made again) and the
        session is not older than its last password change or sign-out everywhere."""
        account = self._account(name, account_id)
        if account is None or not secrets.compare_digest(account.get("session_epoch", ""), epoch):
            return None
        return _principal(account, "session")

    def by_password(self, name: str, password: str) -> Principal | None:
        """Who this name and password sign in as; argon2 runs whether or not the name exists."""
        try:
            account = self.store.get_account(normalised_name(name))
        except AccountError:
            account = None
        stored = (account or {}).get("password_hash") or _UNKNOWN_HASH
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if not account or not account.get("password_hash"):
            return None
        if _hasher.check_needs_rehash(stored):
            self._rehash(account, stored, password)
        return _principal(account, "session")

    def _rehash(self, account: dict, stored: str, password: str) -> None:
        """Store the password under today's parameters; sessions go on (it is the same password).

        Only the hash changes, and only if no one changed it meanwhile: a password change or a sign-out
        everywhere racing this sign-in stands."""
        try:
            if self.store.replace_password_hash(account["name"], stored, _hasher.hash(password)):
                log.info("rehashed the password of %s with today's argon2 parameters", account["name"])
        except SightfleetError as exc:
            log.warning("could not rehash the password of %s (next sign-in tries again): %s", account["name"], exc)

    def make_link(self, name: str, ttl_s: int = LINK_TTL_S) -> str:
        """A one-time sign-in token for this account, valid ttl_s seconds."""
        account = self.get(name)
        token = secrets.token_urlsafe(32)
        self.store.put_link(secret_hash(token), {"account_id": account["account_id"], "name": account["name"],
                                                 "expires_at": int(time.time() + ttl_s)})
        return token

    def redeem_link(self, token: str) -> Principal | None:
        """Who a sign-in token signs in as, once; None when unknown, used already or expired."""
        link = self.store.take_link(secret_hash(token))
        if link is None or link["expires_at"] < time.time():
            return None
        return self._live(link["name"], link["account_id"], "session")

    def _live(self, name: str, account_id: str, via: str) -> Principal | None:
        account = self._account(name, account_id)
        return None if account is None else _principal(account, via)

    def _account(self, name: str, account_id: str) -> dict | None:
        """The account of this name, if it is still the one with this id."""
        account = self.store.get_account(name)
        if account is None or not secrets.compare_digest(account["account_id"], account_id):
            return None
        return account

    @staticmethod
    def _hash_password(password: str) -> str:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
        return _hasher.hash(password)
