"""Sealing access-key secrets for storage: AES-256-GCM under a key that the web tier holds, not the table.

SigV4 needs the secret itself to check a signature, so it cannot be stored as a hash the way API keys
are. It is stored sealed instead, as self-hosted S3-compatible stores keep their users' secrets: a
reader of the accounts table learns nothing usable without the credentials key, which lives outside
the table (locally in the stack's state dir, mode 0600; on AWS in Secrets Manager). Each sealed value
is bound to its access key id, so a sealed secret copied onto another key's item does not open.
"""
from __future__ import annotations

import base64
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sightfleet.aws.secrets import secret_string

log = logging.getLogger(__name__)
_INFO = b"sightfleet access-key secrets v1"
_VERSION = "v1"
_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value that does not open: another credentials key, a damaged value, or another key id's."""


class SecretBox:
    """Seals and opens short secrets under one credentials key (any string of at least 32 characters)."""

    def __init__(self, credentials_key: str):
        if len(credentials_key) < 32:
            raise ValueError("the credentials key must have at least 32 characters")
        material = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(credentials_key.encode())
        self._aead = AESGCM(material)

    def seal(self, secret: str, bound_to: str) -> str:
        """The secret sealed for storage, openable only with this key and the same `bound_to`."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), bound_to.encode())
        return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, bound_to: str) -> str:
        """The secret; SealError when it cannot be opened."""
        version, _, body = sealed.partition(":")
        try:
            raw = base64.b64decode(body, validate=True)
            if version != _VERSION or len(raw) <= _NONCE_BYTES:
                raise SealError("not a sealed secret of this version")
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], bound_to.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealError("the sealed secret does not open with this credentials key") from exc


def kept_key(path: Path) -> str:
    """A random key kept in `path` (made once, mode 0600, its folder 0700), read back on later calls."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def local_credentials_key(settings) -> str:
    """The credentials key that a local stack keeps beside its endpoint's state (even with --no-persist, so that
    the accounts CLI, run beside the stack, seals with the same key as the web tier opens with)."""
    state = settings.local_state_path
    return kept_key(state.with_name(state.name + ".credentials-key"))


def credentials_box(settings) -> SecretBox | None:
    """The box for this stack's access-key secrets, from the first of: SIGHTFLEET_CREDENTIALS_KEY, the
    deployed stack's Secrets Manager secret, the key a local stack keeps beside its state; None without."""
    key = settings.credentials_key
    if not key and settings.credentials_key_secret:
        key = secret_string(settings, settings.credentials_key_secret)
    if not key and settings.is_local:
        key = local_credentials_key(settings)
    if not key:
        log.warning("no credentials key: access keys for SigV4 clients can be neither issued nor checked")
        return None
    return SecretBox(key)
