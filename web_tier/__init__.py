"""The web tier: Flask app factory with one blueprint per concern."""
from __future__ import annotations

import logging
import secrets

from flask import Flask

from sightfleet.config import Settings
from sightfleet.resources import Resources
from web_tier.submit import Submitter

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, resources: Resources | None = None) -> Flask:
    """Build the app; settings and resources are read once here and passed inward."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        # Room for a multipart envelope around the largest allowed image.
        MAX_CONTENT_LENGTH=settings.max_upload_bytes * 10 + 1024 * 1024,
        SECRET_KEY=settings.extra.get("secret_key") or secrets.token_hex(32),
    )
    resources = resources or Resources.connect(settings)
    app.extensions["sightfleet"] = resources
    app.extensions["submitter"] = Submitter(resources, settings.max_upload_bytes)

    from web_tier import api, cse546, errors, health, pages
    errors.register(app)
    for module in (health, api, pages, cse546):
        app.register_blueprint(module.bp)
    return app
