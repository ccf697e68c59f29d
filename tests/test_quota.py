"""The image quota's decisions over the limits store's interface (the store itself: tests/test_limits.py)."""
from __future__ import annotations

import pytest

from sightfleet.contracts import ANONYMOUS_OWNER
from sightfleet.errors import Unavailable
from sightfleet.memory import Faults, MemoryLimits
from sightfleet.quota import ANONYMOUS_IMAGES, Quota, QuotaExceeded

DAY = 86400


@pytest.fixture
def clock():
    return [1000.0]


@pytest.fixture
def store(clock):
    return MemoryLimits(Faults(), clock=lambda: clock[0])


@pytest.mark.parametrize("limit, held, asked, fits", [
    (3, 0, 3, True), (3, 1, 2, True), (3, 1, 3, False), (3, 3, 1, False), (1, 0, 2, False),
])
def test_an_owner_holds_at_most_its_limit(store, limit, held, asked, fits):
    quota = Quota(store, limit)
    store.images["alice"] = held
    if fits:
        quota.reserve("alice", asked)
        assert store.held("alice") == held + asked
    else:
        with pytest.raises(QuotaExceeded, match=f"may hold {limit} images"):
            quota.reserve("alice", asked)
        assert store.held("alice") == held   # nothing counted


def test_no_limit_counts_nothing_and_never_refuses(store):
    quota = Quota(store, 0)
    quota.reserve("alice", 50)
    assert not quota.applies_to("alice") and store.held("alice") == 0


def test_what_was_not_accepted_is_given_back_and_deleting_releases_never_below_zero(store):
    quota = Quota(store, 5)
    quota.reserve("bob", 4)
    quota.give_back("bob", 3)
    assert store.held("bob") == 1
    quota.release("bob", 5)   # images from before the quota was set
    assert store.held("bob") == 0


def test_the_anonymous_owner_is_counted_per_window_of_images_sent(store, clock):
    quota = Quota(store, 0, anonymous_limit=2, anonymous_window_s=7 * DAY)
    quota.reserve(ANONYMOUS_OWNER, 2)
    with pytest.raises(QuotaExceeded, match="2 images per 7 days"):
        quota.reserve(ANONYMOUS_OWNER, 1)
    assert store.windows[ANONYMOUS_IMAGES][0] == 2        # the refusal gave its count back
    quota.release(ANONYMOUS_OWNER, 2)                      # expiring photos are not counted off
    assert store.windows[ANONYMOUS_IMAGES][0] == 2 and store.held(ANONYMOUS_OWNER) == 0
    clock[0] += 7 * DAY
    quota.reserve(ANONYMOUS_OWNER, 2)                      # a new window
    quota.give_back(ANONYMOUS_OWNER, 1)
    assert store.windows[ANONYMOUS_IMAGES][0] == 1


def test_an_unreachable_store_fails_closed(store):
    store._faults.fail("limits.reserve")
    with pytest.raises(Unavailable):
        Quota(store, 3).reserve("alice", 1)
