"""A request's quota reservation: its uploads are counted where the view accepts them, settled when it ends.

The view reserves its images before reading any (sightfleet/quota.py: QuotaExceeded answers 429,
the store out of reach 503); the Submitter counts each image it accepts; when the request ends, the
images reserved and not accepted (refused, failed, an error) are given back.
"""
from __future__ import annotations

import logging

from flask import Flask, g, has_app_context

from sightfleet.errors import SightfleetError
from sightfleet.quota import QUOTA_RETRY_AFTER_S, Quota, QuotaExceeded
from web_tier.errors import error_response
from web_tier.services import services

log = logging.getLogger(__name__)


def _quota() -> Quota | None:
    return services().quota


def reserve_images(owner: str, count: int) -> None:
    """Count count images of owner's before any is read; raises QuotaExceeded or Unavailable."""
    quota = _quota()
    if quota is None or count <= 0 or not quota.applies_to(owner):
        return
    quota.reserve(owner, count)
    g.quota_reserved, g.quota_owner = g.get("quota_reserved", 0) + count, owner
    g.quota_accepted = g.get("quota_accepted", 0)


def count_accepted() -> None:
    """The Submitter accepted one image: it keeps its place in the reservation."""
    if has_app_context() and "quota_reserved" in g:
        g.quota_accepted += 1


def settle(_exc: BaseException | None = None) -> None:
    """teardown_request: give back what was reserved and not accepted."""
    unused = g.pop("quota_reserved", 0) - g.pop("quota_accepted", 0)
    owner = g.pop("quota_owner", None)
    quota = _quota()
    if owner and unused > 0 and quota is not None:
        try:
            quota.give_back(owner, unused)
        except SightfleetError as exc:
            log.error("quota: could not give back %s unused images of %s: %s", unused, owner, exc)


def release(owner: str, count: int = 1) -> None:
    """Count count fewer images for owner (call it when images are deleted); raises Unavailable."""
    quota = _quota()
    if quota is not None:
        quota.release(owner, count)


def _exceeded(exc: QuotaExceeded):
    return error_response(429, "QUOTA_EXCEEDED", str(exc), {"Retry-After": str(QUOTA_RETRY_AFTER_S)})


def install(app: Flask) -> None:
    """Answer QuotaExceeded and settle every request's reservation."""
    app.register_error_handler(QuotaExceeded, _exceeded)
    app.teardown_request(settle)
