"""scripts/run and accounts: the first start makes an admin and says once how to sign in; later starts do not."""
from __future__ import annotations

import re
import stat

import pytest
import requests

from devstack.stack import ADMIN_KEY_LINE, session_key_file
from tests.support import redeem_sign_in_link, stack_state_dir, start_stack, start_stack_again

pytestmark = pytest.mark.e2e

LINK_RE = re.compile(r"(http://127\.0\.0\.1:\d+/signin/link\?token=[A-Za-z0-9_-]+)")


def test_first_start_prints_a_link_and_the_admin_key_once_and_sessions_survive_a_restart(tmp_path):
    # No fleet: this is about the door, not the workers.
    stack = start_stack(tmp_path, SIGHTFLEET_MAX_INSTANCES="0", SIGHTFLEET_WARM_POOL_SIZE="0")
    try:
        log = stack.log_text()
        assert stack.api_key.startswith("sfk_") and log.count(ADMIN_KEY_LINE) == 1
        [link] = LINK_RE.findall(log)
        assert stack.get("/api/ops/summary", timeout=10).status_code == 200  # the key is an admin's
        assert requests.get(stack.web_url + "/api/ops/summary", timeout=10).status_code == 401
        browser = requests.Session()
        signed_in = redeem_sign_in_link(browser, link, allow_redirects=False)
        assert signed_in.status_code == 302 and "sightfleet_session" in browser.cookies
        assert browser.get(stack.web_url + "/ops", headers={"Accept": "text/html"}, timeout=10).status_code == 200
        assert redeem_sign_in_link(requests.Session(), link).status_code == 400  # once only
        token = link.split("token=")[1]
        assert token not in stack.log_text()[stack.log_text().index(ADMIN_KEY_LINE):]  # printed once, never logged
        key_file = session_key_file(stack_state_dir(stack))
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        kept_key = key_file.read_text()
    finally:
        assert stack.stop() == 0
    again = start_stack_again(tmp_path, stack, SIGHTFLEET_MAX_INSTANCES="0", SIGHTFLEET_WARM_POOL_SIZE="0")
    try:
        log = again.log_text()
        assert ADMIN_KEY_LINE not in log and not LINK_RE.findall(log)
        assert "An admin account exists" in log and "web_tier.accounts link admin" in log
        assert again.get("/api/ops/summary", timeout=10).status_code == 200  # the first start's key still works
        # The same signing key, so the browser's session from before the restart still holds.
        assert key_file.read_text() == kept_key
        assert browser.get(again.web_url + "/ops", headers={"Accept": "text/html"}, timeout=10,
                           allow_redirects=False).status_code == 200
    finally:
        again.stop()


def test_a_session_key_set_by_hand_reaches_no_child_but_the_web_tier():
    from sightfleet.config import Settings
    from devstack.stack import SESSION_KEY_VAR, local_environment
    from sightfleet.local_access import LocalAccess
    env = local_environment({SESSION_KEY_VAR: "set-by-the-operator", "SIGHTFLEET_PREFIX": "x"}, Settings(),
                            LocalAccess.generate())
    assert SESSION_KEY_VAR not in env and env["SIGHTFLEET_PREFIX"] == "x"
