"""GET /api/ops/workers: what each live worker is doing, from its latest heartbeat (app_tier/oversight.py).

A worker holding a photo far longer than its peers (OUTLIER_FACTOR times the fleet's median hold,
and at least OUTLIER_MIN_S) is flagged `outlier`: a hung pipeline or a pathological image shows up
here before the worker's watchdog ends it.
"""
from __future__ import annotations

import statistics
import time

from sightfleet.contracts import epoch, iso
from sightfleet.interfaces import ALL_STATES, HEARTBEAT_KIND, LIVE_STATES

OUTLIER_FACTOR = 3.0
OUTLIER_MIN_S = 10.0


def worker_entry(now: float, instance, beat: dict) -> dict:
    """One worker: its photos with how long each has been held, its stage, models, CPU and memory."""
    holding = []
    for held in beat.get("holding") or []:
        since = epoch(held.get("since")) if isinstance(held, dict) else None
        if since is not None:
            holding.append({"id": str(held.get("id")), "since": held.get("since"),
                            "held_s": round(max(0.0, now - since), 1), "stage": held.get("stage")})
    heartbeat = epoch(beat.get("last_heartbeat"))
    return {"instance_id": instance.id, "ec2_state": instance.state, "state": beat.get("state") or "booting",
            "stage": beat.get("stage"), "holding": holding,
            "longest_held_s": max((h["held_s"] for h in holding), default=0.0),
            "model_versions": beat.get("model_versions") or {}, "cpu_percent": beat.get("cpu_percent"),
            "rss_mb": beat.get("rss_mb"), "images_done": int(beat.get("images_done") or 0),
            "heartbeat_age_s": None if heartbeat is None else round(now - heartbeat, 1), "outlier": False}


def flag_outliers(entries: list[dict], factor: float = OUTLIER_FACTOR, floor_s: float = OUTLIER_MIN_S) -> list[dict]:
    """Mark the workers whose longest hold is far beyond the median hold of every photo held in the fleet."""
    holds = [h["held_s"] for e in entries for h in e["holding"]]
    if not holds:
        return entries
    bound = max(floor_s, factor * statistics.median(holds))
    for entry in entries:
        entry["outlier"] = entry["longest_held_s"] > bound
    return entries


def workers_document(resources, now: float | None = None) -> dict:
    """The /api/ops/workers document: every live instance, outliers flagged, longest hold first."""
    now = time.time() if now is None else now
    live = [i for i in resources.fleet.instances(states=ALL_STATES) if i.state in LIVE_STATES]
    beats = resources.fleet_log.get_many(HEARTBEAT_KIND, [i.id for i in live])
    entries = flag_outliers([worker_entry(now, i, beats.get(i.id) or {}) for i in live])
    entries.sort(key=lambda e: (-e["longest_held_s"], e["instance_id"]))
    return {"generated_at": iso(now), "outlier_bound": {"factor": OUTLIER_FACTOR, "min_s": OUTLIER_MIN_S},
            "workers": entries}
