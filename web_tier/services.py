"""Access to the app's shared objects from views."""
from __future__ import annotations

from flask import current_app, request

from sightfleet.config import Settings
from sightfleet.resources import Resources
from web_tier.albums import Albums
from web_tier.identity import current_principal
from web_tier.submit import Submitter
from web_tier.waiting import ResultWaiter, WaitBudget


def resources() -> Resources:
    return current_app.extensions["sightfleet"]


def albums() -> Albums:
    return current_app.extensions["albums"]


def submitter() -> Submitter:
    return current_app.extensions["submitter"]


def waiter() -> ResultWaiter:
    return current_app.extensions["waiter"]


def bounded_wait(image_ids: list[str], timeout_s: float) -> list[dict] | None:
    """waiter().wait within the caller's share of waits; raises WaitRefused when the caller has none left."""
    principal = current_principal()
    anonymous = principal is None or principal.via == "anonymous"
    caller = f"address:{request.remote_addr}" if anonymous else f"owner:{principal.owner}"
    budget: WaitBudget = current_app.extensions["wait_budget"]
    with budget.slot(caller, anonymous):
        return waiter().wait(image_ids, timeout_s)


def settings() -> Settings:
    return resources().settings
