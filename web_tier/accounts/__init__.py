"""Accounts of the web tier: the service (sightfleet/accounts.py) and its command line (`python -m web_tier.accounts`)."""
from sightfleet.accounts import AccountError, Accounts, IssuedKey, secret_hash

__all__ = ["AccountError", "Accounts", "IssuedKey", "secret_hash"]
