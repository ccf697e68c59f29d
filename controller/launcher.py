"""Starts worker instances through EC2 RunInstances with the boot script rendered from ami/."""
from __future__ import annotations

import logging

from controller.templates import user_data

log = logging.getLogger(__name__)


class Launcher:
    """Launches workers of one stack: image or launch template, type, tags and profile come from Settings."""

    def __init__(self, fleet, settings):
        self._fleet = fleet
        # Rendered once: the settings are read once at start and do not change while running.
        self.user_data = user_data(settings, "worker")

    def launch(self, count: int) -> list[str]:
        """Launch count workers; returns their instance ids."""
        if count <= 0:
            return []
        ids = self._fleet.launch(count, self.user_data)
        log.debug("RunInstances started %s", ids)
        return ids
