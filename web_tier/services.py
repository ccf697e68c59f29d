"""The app's shared objects, typed: built once in create_app, read by views through services()."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, request
from flask_limiter import Limiter

from sightfleet.aws.limits import LimitsTable
from sightfleet.config import Settings
from sightfleet.control import Control
from sightfleet.quota import Quota
from sightfleet.resources import Resources
from web_tier.accounts import Accounts
from web_tier.albums import Albums
from web_tier.alerts import Alerts
from web_tier.cache import TtlCache
from web_tier.counters import AddressCounter
from web_tier.expiry import AnonymousExpiry
from web_tier.health_probe import HealthProbe
from web_tier.identity import current_principal
from web_tier.opsdata import OpsData
from web_tier.rekognition.calls import Calls
from web_tier.signin_guard import SignInGuard, VerificationGate
from web_tier.submit import Submitter
from web_tier.waiting import ResultWaiter, WaitBudget
from web_tier.webhooks.service import Webhooks

EXTENSION = "sightfleet"   # the key of the Services in app.extensions


@dataclass
class Services:
    """Everything views share: the stack's resources and the web tier's own services, counters and caches."""

    resources: Resources
    albums: Albums
    submitter: Submitter
    waiter: ResultWaiter
    wait_budget: WaitBudget
    health: HealthProbe
    accounts: Accounts
    webhooks: Webhooks
    limits_table: LimitsTable              # the counters of the door, the rate limits and the sign-in guard
    door_counter: AddressCounter | None    # requests per address before authentication (web_tier/door.py)
    anonymous_counter: AddressCounter | None   # anonymous callers' requests per address (web_tier/limits.py)
    quota: Quota | None
    expiry: AnonymousExpiry
    signin_guard: SignInGuard
    verification_gate: VerificationGate
    ops: OpsData
    ops_alerts: Alerts
    ops_audit: TtlCache                    # the audit trail as the ops summary shows it
    ops_signals: TtlCache                  # what the alerts need beyond the summary
    limiter: Limiter | None = None         # set when the rate limit is installed
    # Made on first use:
    ops_control: Control | None = None
    rekognition_calls: Calls | None = None
    openapi: dict | None = None
    image_origin: str | None = None

    @property
    def settings(self) -> Settings:
        return self.resources.settings


def services_of(app: Flask) -> Services:
    return app.extensions[EXTENSION]


def services() -> Services:
    return services_of(current_app)


def resources() -> Resources:
    return services().resources


def albums() -> Albums:
    return services().albums


def submitter() -> Submitter:
    return services().submitter


def waiter() -> ResultWaiter:
    return services().waiter


def bounded_wait(image_ids: list[str], timeout_s: float) -> list[dict] | None:
    """waiter().wait within the caller's share of waits; raises WaitRefused when the caller has none left."""
    principal = current_principal()
    anonymous = principal is None or principal.via == "anonymous"
    caller = f"address:{request.remote_addr}" if anonymous else f"owner:{principal.owner}"
    with services().wait_budget.slot(caller, anonymous):
        return waiter().wait(image_ids, timeout_s)


def settings() -> Settings:
    return resources().settings
