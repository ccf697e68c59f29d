"""Secrets Manager: the one secret a deployed stack reads at start (the key that signs session cookies)."""
from __future__ import annotations

from sightfleet.aws.session import client, translated
from sightfleet.config import Settings


def secret_string(settings: Settings, secret_id: str) -> str:
    """The current value of a secret; NotFound when it does not exist, Unavailable when out of reach."""
    with translated(f"read secret {secret_id}"):
        return client(settings, "secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
