"""Image quotas over the limits table: images held per owner, and the anonymous owner's images per window.

An upload reserves its images where it is accepted, before any is read (QuotaExceeded when they do not
fit), and gives back those that were not accepted; deleting images releases them. The quota fails
CLOSED: the store out of reach raises Unavailable, since an image accepted uncounted would stay
uncounted and a later release would take another image's place.
"""
from __future__ import annotations

import logging

from sightfleet.contracts import ANONYMOUS_OWNER
from sightfleet.errors import SightfleetError
from sightfleet.interfaces import LimitsStore

log = logging.getLogger(__name__)
ANONYMOUS_IMAGES = "anonymous-images"   # the anonymous owner's window of images sent
# A quota is not a window: when a client may try again is up to it (deleting images); this is a hint.
QUOTA_RETRY_AFTER_S = 60


class QuotaExceeded(SightfleetError):
    """The images do not fit the owner's quota; nothing was counted."""


class Quota:
    """Images held per owner, at most `limit` each (0: no quota, nothing counted), and the anonymous owner's
    images per window of anonymous_window_s, at most anonymous_limit (0: counted as any owner's).

    Anonymous photos expire (web_tier/expiry.py), so the anonymous owner's count is of images sent in
    the last window rather than images held: what expires need not be counted off one by one.
    """

    def __init__(self, store: LimitsStore, limit: int, anonymous_limit: int = 0, anonymous_window_s: int = 0):
        self.store, self.limit = store, limit
        self.anonymous_limit, self.anonymous_window_s = anonymous_limit, anonymous_window_s

    def counts_by_window(self, owner: str) -> bool:
        return owner == ANONYMOUS_OWNER and self.anonymous_limit > 0

    def applies_to(self, owner: str) -> bool:
        """True when owner's images are counted at all."""
        return bool(self.limit) or self.counts_by_window(owner)

    def reserve(self, owner: str, count: int) -> None:
        """Count owner's count images; QuotaExceeded (nothing counted) when they do not fit; Unavailable."""
        if not self.applies_to(owner) or count <= 0:
            return
        if not self._fits(owner, count):
            log.info("quota: %s is at its limit, refused %s more images", owner, count)
            raise QuotaExceeded(self._refusal(owner))

    def give_back(self, owner: str, count: int) -> None:
        """Undo reserve() for count images that were not accepted after all."""
        if count <= 0 or not self.applies_to(owner):
            return
        if self.counts_by_window(owner):
            self.store.give_back(ANONYMOUS_IMAGES, count)
        else:
            self.store.release(owner, count)

    def release(self, owner: str, count: int = 1) -> None:
        """Count count fewer images for owner (its images were deleted); raises Unavailable.

        The anonymous owner's window is not counted down: its images expire, the window ends.
        """
        if count > 0 and not self.counts_by_window(owner):
            self.store.release(owner, count)

    def _fits(self, owner: str, count: int) -> bool:
        """Count the images, unless they do not fit (then nothing stays counted)."""
        if not self.counts_by_window(owner):
            return self.store.reserve(owner, count, self.limit)
        if self.store.hit(ANONYMOUS_IMAGES, self.anonymous_window_s, count) <= self.anonymous_limit:
            return True
        self.store.give_back(ANONYMOUS_IMAGES, count)
        return False

    def _refusal(self, owner: str) -> str:
        if self.counts_by_window(owner):
            days = self.anonymous_window_s / 86400
            return (f"callers without an account may send {self.anonymous_limit} images per {days:g} days "
                    "together, and that many are waiting; sign in, or try again later")
        return f"this account may hold {self.limit} images; delete some before sending more"
