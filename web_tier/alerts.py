"""When the stack needs a person, locally: a banner on /ops, a log line when an alert starts, and
`sightfleet_alert{name=...}` in /metrics. On AWS the same conditions are CloudWatch alarms of the
deployed stack (sightfleet/deploy/alarms.py).

The rules are a pure function of one ops summary, the health checks' problems and whether the rate
limits fail open (find_alerts); Alerts keeps, per web process, since when the fleet has been at its
cap and which alerts were already logged.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)
ALERT_NAMES = ("dead_letters", "worker_stalled", "fleet_at_cap", "unhealthy", "limits_fail_open", "paused")
# The fleet at its cap for this long means the cap, not the load, sets the latency.
AT_CAP_ALERT_S = 300.0


def find_alerts(summary: dict, heartbeat_timeout_s: float, at_cap_for_s: float | None,
                problems: list[str] | None = None, limits_fail_open: bool = False) -> list[dict]:
    """The alerts one summary raises (with the health checks' problems and the rate limits' state): name, message."""
    found = []
    dead = summary["queue"].get("dead_letter", 0)
    if dead:
        found.append({"name": "dead_letters", "message": f"{dead} messages in the dead-letter queue: "
                      "look at their photos, then retry or redrive"})
    silent = [w["instance_id"] for w in summary["workers"] if w.get("live") and (
        w.get("state") == "stalled" or (w.get("heartbeat_age_s") or 0) > heartbeat_timeout_s / 2)]
    if silent:
        found.append({"name": "worker_stalled", "message": f"no recent heartbeat from {', '.join(silent[:5])}"})
    if at_cap_for_s is not None and at_cap_for_s >= AT_CAP_ALERT_S:
        cap = summary["instances"]["max"]
        found.append({"name": "fleet_at_cap", "message": f"the fleet has been at its cap of {cap} for "
                      f"{at_cap_for_s / 60:.0f} min: raise the maximum or expect longer waits"})
    if problems:
        found.append({"name": "unhealthy", "message": f"health checks fail: {'; '.join(problems)[:300]}"})
    if limits_fail_open:
        found.append({"name": "limits_fail_open", "message": "the rate limits' table is out of reach: each web "
                      "process counts on its own until it answers (the limits fail open)"})
    if (summary.get("control") or {}).get("paused"):
        by = summary["control"].get("paused_by") or "an operator"
        found.append({"name": "paused", "message": f"processing is paused (by {by}); uploads queue up"})
    return found


class Alerts:
    """find_alerts with the time at the cap remembered, and one log line as each alert starts."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._at_cap_since: float | None = None
        self._active: set[str] = set()

    def check(self, summary: dict, settings, problems: list[str] | None = None,
              limits_fail_open: bool = False) -> list[dict]:
        now = self._clock()
        inst = summary["instances"]
        at_cap = inst["max"] > 0 and inst["running"] + inst["pending"] >= inst["max"]
        with self._lock:
            self._at_cap_since = (self._at_cap_since or now) if at_cap else None
            since = self._at_cap_since
        alerts = find_alerts(summary, settings.heartbeat_timeout_s, None if since is None else now - since,
                             problems, limits_fail_open)
        names = {a["name"] for a in alerts}
        with self._lock:
            started, self._active = names - self._active, names
        for alert in alerts:
            if alert["name"] in started:
                log.warning("alert %s: %s", alert["name"], alert["message"])
        return alerts
