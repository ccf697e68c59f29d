"""Shared fixtures: a real moto server, provisioned settings, the Flask app, the local stack; test markers."""
from __future__ import annotations

import pytest

from sightfleet.config import Settings
from sightfleet.resources import Resources, provision
from tests.support import sign_in_with_key, start_moto, start_stack, unique_prefix, use_test_access


def pytest_configure(config):
    """Every test speaks with the run's own key pair (tests/support.py), never with the caller's credentials."""
    use_test_access()

# Fixtures that start the whole local stack: a test using one is `e2e`.
E2E_FIXTURES = {"local_stack"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark e2e by fixture use; e2e and browser tests are also `slow` (so -m "not slow" is the quick loop)."""
    for item in items:
        if E2E_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("e2e") or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def moto_server():
    """The endpoint URL of a moto server shared by the session (each test uses its own prefix)."""
    proc, url = start_moto()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def settings_factory(moto_server):
    """Make provisioned Settings on the shared moto server, each with a fresh prefix."""
    def make(**changes) -> Settings:
        settings = Settings(endpoint_url=moto_server, prefix=unique_prefix(), **changes)
        provision(settings)
        return settings
    return make


@pytest.fixture
def settings(settings_factory) -> Settings:
    return settings_factory()


@pytest.fixture
def resources(settings) -> Resources:
    return Resources.connect(settings)


@pytest.fixture
def app(settings, resources):
    from web_tier import create_app
    app = create_app(settings, resources)
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def client(app, resources):
    """A test client that sends a signed-in user's API key on every request (`client.api_key`)."""
    client = app.test_client()
    sign_in_with_key(client, resources, "tester")
    return client


@pytest.fixture
def admin_client(app, resources):
    """A test client acting for an admin (ops, metrics, health details)."""
    client = app.test_client()
    sign_in_with_key(client, resources, "admin", admin=True)
    return client


@pytest.fixture
def anonymous_client(app):
    """A test client that proves no identity."""
    return app.test_client()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """The whole stack, started once per session like scripts/run, with a small fleet."""
    # No warm pool here: these tests watch a fleet launch and retire (tests/test_warm_pool_e2e.py has the pool).
    stack = start_stack(tmp_path_factory.mktemp("stack"), SIGHTFLEET_MAX_INSTANCES="2",
                        SIGHTFLEET_IDLE_GRACE_S="20", SIGHTFLEET_WARM_POOL_SIZE="0")
    yield stack
    stack.stop()
