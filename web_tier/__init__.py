"""The web tier: Flask app factory with one blueprint per concern."""
from __future__ import annotations

import logging

from flask import Flask

from sightfleet.config import Settings
from sightfleet.resources import Resources
from web_tier.albums import Albums
from web_tier.health import HealthProbe
from web_tier.submit import MAX_IMAGES_PER_REQUEST, Submitter
from web_tier.waiting import ResultWaiter

log = logging.getLogger(__name__)
# Form parts beside the files: album, new_album and csrf_token on the upload form, with room to spare.
FORM_FIELDS = 10


def create_app(settings: Settings | None = None, resources: Resources | None = None) -> Flask:
    """Build the app; settings and resources are read once here and passed inward.

    Given resources carry their own settings, which win; `settings` only serves to connect without them.
    """
    resources = resources or Resources.connect(settings or Settings.from_env())
    settings = resources.settings
    app = Flask(__name__)
    # Werkzeug enforces these while it reads the body: a request may carry MAX_IMAGES_PER_REQUEST
    # images of the largest allowed size plus its envelope, in a few parts more than that. (Flask's
    # MAX_FORM_MEMORY_SIZE, 500 kB for a text field, stays: werkzeug also applies it to its parse
    # buffer, so it must stay well above the 64 kB that the parser reads at a time.)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_upload_bytes * MAX_IMAGES_PER_REQUEST + 1024 * 1024,
                      MAX_FORM_PARTS=MAX_IMAGES_PER_REQUEST + FORM_FIELDS)
    app.extensions["sightfleet"] = resources
    app.extensions["albums"] = Albums(resources.results)
    app.extensions["submitter"] = Submitter(resources, settings.max_upload_bytes,
                                            on_accept=app.extensions["albums"].note)
    app.extensions["waiter"] = ResultWaiter(resources.results)
    app.extensions["health"] = HealthProbe(resources)

    from web_tier import api, csrf, cse546, display, errors, health, ops, pages
    errors.register(app)
    csrf.install(app)
    display.install(app)
    for module in (health, api, pages, cse546, ops):
        app.register_blueprint(module.bp)
    from web_tier import limits, openapi, security
    for extension in (security, openapi, limits):
        extension.install(app)
    return app
