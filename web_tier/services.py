"""Access to the app's shared objects from views."""
from __future__ import annotations

from flask import current_app

from sightfleet.config import Settings
from sightfleet.resources import Resources
from web_tier.albums import Albums
from web_tier.submit import Submitter
from web_tier.waiting import ResultWaiter


def resources() -> Resources:
    return current_app.extensions["sightfleet"]


def albums() -> Albums:
    return current_app.extensions["albums"]


def submitter() -> Submitter:
    return current_app.extensions["submitter"]


def waiter() -> ResultWaiter:
    return current_app.extensions["waiter"]


def settings() -> Settings:
    return resources().settings
