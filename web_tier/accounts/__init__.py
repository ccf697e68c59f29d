"""Accounts of the web tier: the service (web_tier/accounts/service.py) and its command line (`python -m web_tier.accounts`)."""
from web_tier.accounts.service import AccountError, Accounts, IssuedKey, secret_hash

__all__ = ["AccountError", "Accounts", "IssuedKey", "secret_hash"]
