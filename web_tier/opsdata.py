"""Ops figures for the dashboard, its JSON API and /metrics: read the stack's records, aggregate, cache.

The figures come only from what the tiers publish (CloudWatch gauges from the controller, the
results table, worker heartbeats and controller decisions in the fleet table, the queues and the
EC2 API), so the dashboard reads the same on AWS as on the local stack. No Flask in here.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from sightfleet.aws.dynamodb import HEARTBEAT_KIND, DecisionTail
from sightfleet.aws.ec2 import ALL_STATES, LIVE_STATES, POOLED_STATES
from sightfleet.contracts import FAILED, epoch, iso
from web_tier.alerts import ALERT_NAMES
from web_tier.cache import TtlCache

log = logging.getLogger(__name__)

# CloudWatch metrics the controller publishes every tick, by the series name the API uses.
GAUGE_METRICS = {
    "queue_visible": "QueueVisible",
    "queue_in_flight": "QueueInFlight",
    "dead_letter": "DeadLetterVisible",
    "instances_desired": "DesiredInstances",
    "instances_running": "RunningInstances",
}
RESULT_SERIES = ("completed_per_min", "failed_per_min", "latency_p50_ms", "latency_p95_ms")
# Steps CloudWatch accepts (1/5/10/30 s for high-resolution data, then multiples of 60 s).
STEPS_S = (5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)
MAX_POINTS = 120
MIN_WINDOW_S, DEFAULT_WINDOW_S, MAX_WINDOW_S = 60, 900, 86400
RECENT_S = 300
# The controller records every tick; the dashboard lists the ticks that changed something in
# this lookback (at 2 s a tick, 450 small documents), plus the latest tick.
DECISION_LOOKBACK_S = 900
DECISION_INPUTS = ("visible", "in_flight", "dead_letters", "backlog", "running", "pending", "target",
                   "time_per_image_s", "quiet_for_s")
# ASCII digits, and few of them: "9" * 400 would make an infinite float, and int() of it would raise.
_WINDOW_RE = re.compile(r"^\s*([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_ENDED_STATES = ("terminated", "stopped")


def parse_window(text: str | None) -> int:
    """A window length in seconds from '900', '90s', '15m' or '1h'; ValueError when unusable."""
    if text is None or not text.strip():
        return DEFAULT_WINDOW_S
    match = _WINDOW_RE.match(text)
    if not match:
        raise ValueError("window must be seconds or a number with s, m, h or d (e.g. 15m)")
    seconds = int(float(match[1]) * _UNIT_S[match[2].lower()])
    if not MIN_WINDOW_S <= seconds <= MAX_WINDOW_S:
        raise ValueError(f"window must be between {MIN_WINDOW_S} s and {MAX_WINDOW_S // 3600} h")
    return seconds


def choose_step(window_s: int) -> int:
    """The shortest step that keeps a window at MAX_POINTS points or fewer."""
    return next((s for s in STEPS_S if window_s / s <= MAX_POINTS), STEPS_S[-1])


@dataclass(frozen=True)
class Window:
    """Whole steps ending at the last step boundary before now (the newest step is complete)."""

    start: float
    step_s: int
    points: int

    @classmethod
    def ending_at(cls, now: float, window_s: int) -> "Window":
        step = choose_step(window_s)
        points = math.ceil(window_s / step)
        end = math.floor(now / step) * step
        return cls(end - points * step, step, points)

    @property
    def end(self) -> float:
        return self.start + self.points * self.step_s

    def index(self, at: float | None) -> int | None:
        """The step holding time `at`, None outside the window."""
        if at is None:
            return None
        i = math.floor((at - self.start) / self.step_s)
        return i if 0 <= i < self.points else None

    def timestamps(self) -> list[str]:
        return [iso(self.start + i * self.step_s) for i in range(self.points)]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation between ranks (numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(result: dict) -> float | None:
    """Submitted -> completed in milliseconds: what the person who sent the photo waited."""
    submitted, completed = epoch(result.get("submitted_at")), epoch(result.get("completed_at"))
    if submitted is None or completed is None:
        return None
    return (completed - submitted) * 1000


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def result_figures(results: list[dict], seconds: float) -> dict:
    """Completions (succeeded or failed), failures, rate per minute and latency percentiles."""
    latencies = [ms for ms in map(latency_ms, results) if ms is not None]
    failed = sum(1 for r in results if r.get("status") == FAILED)
    return {
        "completed": len(results), "failed": failed,
        "completed_per_min": round(len(results) * 60 / seconds, 2),
        "failed_per_min": round(failed * 60 / seconds, 2),
        "latency_p50_ms": _rounded(percentile(latencies, 50)),
        "latency_p95_ms": _rounded(percentile(latencies, 95)),
    }


def bucket_results(window: Window, results: list[dict]) -> tuple[dict[str, list], list[dict]]:
    """Per-step result series, plus the results that fell inside the window."""
    buckets: list[list[dict]] = [[] for _ in range(window.points)]
    inside = []
    for result in results:
        i = window.index(epoch(result.get("completed_at")))
        if i is not None:
            buckets[i].append(result)
            inside.append(result)
    figures = [result_figures(bucket, window.step_s) for bucket in buckets]
    return {name: [f[name] for f in figures] for name in RESULT_SERIES}, inside


def bucket_gauges(window: Window, series: dict[str, list[tuple[datetime, float]]]) -> dict[str, list]:
    """CloudWatch datapoints placed on the window's steps; None where nothing was published."""
    out = {}
    for key, metric in GAUGE_METRICS.items():
        values: list[float | None] = [None] * window.points
        for stamp, value in series.get(metric, []):
            i = window.index(stamp.timestamp())
            if i is not None:
                values[i] = value if values[i] is None else max(values[i], value)
        out[key] = values
    return out


def build_timeseries(window: Window, gauges: dict, results: list[dict]) -> dict:
    """The /api/ops/timeseries document."""
    result_series, inside = bucket_results(window, results)
    return {
        "start": iso(window.start), "end": iso(window.end), "step_s": window.step_s,
        "timestamps": window.timestamps(),
        "series": {**bucket_gauges(window, gauges), **result_series},
        "window_totals": result_figures(inside, window.end - window.start),
    }


@dataclass(frozen=True)
class Snapshot:
    """Every raw read one summary is made from, taken at `now` (epoch seconds)."""

    now: float
    queue: dict
    dead_letter: dict
    instances: list          # sightfleet.aws.ec2.Instance objects in any of ALL_STATES
    workers: list[dict]      # worker heartbeat documents
    decisions: list[dict]    # controller ticks of the last DECISION_LOOKBACK_S, oldest first
    recent: list[dict]       # results completed in the last RECENT_S seconds


def _is_live(instance) -> bool:
    return instance is not None and instance.state in LIVE_STATES


def _is_pooled(instance) -> bool:
    return instance is not None and instance.state in POOLED_STATES


def _span(now: float, instance, doc: dict) -> tuple[float, float | None]:
    """When an instance started costing and when it last did (now while live; None if unknown)."""
    starts = [instance.launched_at.timestamp()] if instance else []
    starts += [t for t in [epoch(doc.get("launched_at"))] if t is not None]
    start = min(starts) if starts else now
    if _is_live(instance):
        end = now
    elif _is_pooled(instance):   # stopped costs no compute from the moment it went to the pool
        end = epoch(doc.get("pooled_at")) or epoch(doc.get("last_heartbeat"))
    else:
        end = epoch(doc.get("last_heartbeat"))
    return start, None if end is None else max(start, end)


def _running_s(start: float, end: float | None, doc: dict) -> float | None:
    """Seconds the instance ran (what EC2 bills): its span less the time it spent in the warm pool."""
    if end is None:
        return None
    pooled = doc.get("pooled_s")
    pooled = float(pooled) if isinstance(pooled, (int, float)) and pooled > 0 else 0.0
    return round(max(0.0, end - start - pooled), 1)


def _worker_state(instance, doc: dict) -> str:
    if _is_pooled(instance):
        return "pooled"
    if not doc:
        # An instance that ended without a single heartbeat crashed while booting or loading.
        return "booting" if _is_live(instance) else "never reported"
    state = doc.get("state") or "unknown"
    # An instance gone whose worker never said goodbye was lost, not retired.
    return state if _is_live(instance) or state in _ENDED_STATES else "lost"


def worker_row(now: float, instance, doc: dict | None) -> dict:
    """One line of the instance table."""
    doc = doc or {}
    start, end = _span(now, instance, doc)
    heartbeat = epoch(doc.get("last_heartbeat"))
    current = doc.get("current") or []
    return {
        "instance_id": instance.id if instance else doc.get("instance_id"),
        "state": _worker_state(instance, doc), "live": _is_live(instance), "pooled": _is_pooled(instance),
        "ec2_state": instance.state if instance else None,
        "launched_at": iso(start), "uptime_s": _running_s(start, end, doc),
        # Cold start (model_load_s) and warm starts: how often it was resumed from the pool, the last one's cost.
        "resumes": int(doc.get("resumes") or 0), "last_resume_s": doc.get("last_resume_s"),
        "images_done": int(doc.get("images_done") or 0), "images_failed": int(doc.get("images_failed") or 0),
        "model_load_s": doc.get("model_load_s"),
        "last_heartbeat": doc.get("last_heartbeat"),
        "heartbeat_age_s": None if heartbeat is None else round(now - heartbeat, 1),
        "current": [str(c) for c in current] if isinstance(current, list) else [str(current)],
    }


def all_worker_rows(snapshot: Snapshot) -> list[dict]:
    """Every instance known from EC2 or a heartbeat: live ones first, then pooled, then newest first."""
    ec2 = {i.id: i for i in snapshot.instances}
    docs = {d["instance_id"]: d for d in snapshot.workers if d.get("instance_id")}
    rows = [worker_row(snapshot.now, ec2.get(i), docs.get(i)) for i in ec2.keys() | docs.keys()]
    return sorted(rows, key=lambda r: (not r["live"], not r["pooled"], -epoch(r["launched_at"]), r["instance_id"]))


def totals(rows: list[dict]) -> dict:
    """Images and instance-seconds over every instance the fleet table remembers."""
    done = sum(r["images_done"] for r in rows)
    failed = sum(r["images_failed"] for r in rows)
    # Running time only (what EC2 bills); unknown when it never reported and has ended.
    seconds = sum(r["uptime_s"] or 0 for r in rows)
    processed = done + failed
    return {
        "images_processed": processed, "images_succeeded": done, "images_failed": failed,
        "instance_seconds": round(seconds, 1),
        "instance_seconds_per_image": round(seconds / processed, 3) if processed else None,
        "instances_seen": len(rows),
        "since": min((r["launched_at"] for r in rows), default=None),
    }


def decision_row(doc: dict) -> dict:
    """One controller tick: when, what it saw, the size it wanted and what it did."""
    actions = [f"launch {i}" for i in doc.get("launched") or []]
    actions += [f"terminate {t.get('id')} ({t.get('reason')})" for t in doc.get("terminated") or []]
    actions += [f"error: {e}" for e in doc.get("errors") or []]
    return {"at": doc.get("at"), "desired": doc.get("desired"),
            "inputs": {k: doc[k] for k in DECISION_INPUTS if k in doc},
            "changed": bool(doc.get("changed")), "action": "; ".join(actions) or "none"}


def notable_decisions(decisions: list[dict], limit: int) -> list[dict]:
    """The latest tick, then the ticks that launched, terminated or failed; newest first."""
    newest = list(reversed(decisions))
    picked = newest[:1] + [d for d in newest[1:] if d.get("changed") or d.get("errors")]
    return [decision_row(d) for d in picked[:limit]]


def summarise(snapshot: Snapshot, min_instances: int, max_instances: int, worker_limit: int = 30,
              decision_limit: int = 20) -> dict:
    """The /api/ops/summary document."""
    rows = all_worker_rows(snapshot)
    live = [r for r in rows if r["live"]]
    latest = snapshot.decisions[-1] if snapshot.decisions else {}
    return {
        "generated_at": iso(snapshot.now),
        "instances": {
            "running": sum(1 for i in snapshot.instances if i.state == "running"),
            "pending": sum(1 for i in snapshot.instances if i.state == "pending"),
            "pooled": sum(1 for i in snapshot.instances if i.state in POOLED_STATES),
            "desired": int(latest.get("desired") or 0), "max": max_instances, "min": min_instances,
            "decided_at": latest.get("at"),
        },
        "queue": {"visible": snapshot.queue.get("visible", 0), "in_flight": snapshot.queue.get("in_flight", 0),
                  "delayed": snapshot.queue.get("delayed", 0), "dead_letter": snapshot.dead_letter.get("visible", 0) + snapshot.dead_letter.get("in_flight", 0)},
        "totals": totals(rows),
        "recent": {"window_s": RECENT_S, **result_figures(snapshot.recent, RECENT_S)},
        "workers": rows[:max(worker_limit, len(live) + sum(1 for r in rows if r["pooled"]))],
        "decisions": notable_decisions(snapshot.decisions, decision_limit),
    }


class OpsData:
    """The dashboard's reads of one stack, cached briefly so many open dashboards cost as one."""

    # One second: several open dashboards (polling every 3 s) share reads, while the load
    # generator, which samples the summary once a second, still sees every change.
    def __init__(self, resources, clock=time.time, cache_s: float = 1.0,
                 worker_limit: int = 30, decision_limit: int = 20):
        self._resources = resources
        self._settings = resources.settings
        self._clock = clock
        self._cache = TtlCache(cache_s)
        self._decisions = DecisionTail(resources.fleet_log, DECISION_LOOKBACK_S)
        self._worker_limit = worker_limit
        self._decision_limit = decision_limit

    def summary(self) -> dict:
        return self._cache.get("summary", self._build_summary)

    def timeseries(self, window_s: int) -> dict:
        window = Window.ending_at(self._clock(), window_s)
        return self._cache.get(("timeseries", window), lambda: self._build_timeseries(window))

    def _build_timeseries(self, window: Window) -> dict:
        gauges = self._resources.metrics.series(list(GAUGE_METRICS.values()), _dt(window.start), _dt(window.end),
                                        window.step_s, "Maximum")
        results = self._resources.results.completed_since(iso(window.start))
        log.debug("timeseries from %s: %s results, %s gauge points", iso(window.start), len(results),
                  sum(len(points) for points in gauges.values()))
        return build_timeseries(window, gauges, results)

    def _build_summary(self) -> dict:
        settings = self._settings
        return summarise(self.snapshot(), settings.min_instances, settings.max_instances,
                         self._worker_limit, self._decision_limit)

    def snapshot(self) -> Snapshot:
        """Read everything a summary needs, now."""
        now = self._clock()
        return Snapshot(
            now=now, queue=self._resources.requests.counts(), dead_letter=self._resources.dead_letters.counts(),
            instances=self._resources.fleet.instances(states=ALL_STATES), workers=self._resources.fleet_log.all(HEARTBEAT_KIND),
            decisions=self._decisions.read(now),
            recent=self._resources.results.completed_since(iso(now - RECENT_S)),
        )


def _dt(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def prometheus_text(summary: dict, stack: str) -> bytes:
    """The summary in Prometheus text format, from a registry built for this one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SummaryCollector(summary, stack))
    return generate_latest(registry)


class _SummaryCollector:
    """Turns one summary document into gauge families (a fresh one per scrape: no shared state)."""

    def __init__(self, summary: dict, stack: str):
        self._summary = summary
        self._stack = stack

    def _family(self, name: str, doc: str, labels: tuple[str, ...], values: list[tuple[tuple, float | None]]):
        family = GaugeMetricFamily(f"sightfleet_{name}", doc, labels=("stack", *labels))
        for label_values, value in values:
            if value is not None:
                family.add_metric((self._stack, *label_values), float(value))
        return family

    def collect(self):
        s, inst, queue, tot, recent = (self._summary, self._summary["instances"], self._summary["queue"], self._summary["totals"],
                                       self._summary["recent"])
        yield self._family("instances", "Worker instances by state (pooled: stopped in the warm pool); desired is "
                           "the controller's target.", ("state",),
                           [((k,), inst[k]) for k in ("running", "pending", "pooled", "desired")])
        yield self._family("instances_bound", "Configured fleet bounds.", ("bound",),
                           [(("min",), inst["min"]), (("max",), inst["max"])])
        yield self._family("queue_messages", "Approximate messages in the request and dead-letter queues.",
                           ("queue", "state"), [(("requests", "visible"), queue["visible"]),
                                                (("requests", "in_flight"), queue["in_flight"]),
                                                (("requests", "delayed"), queue["delayed"]),
                                                (("dead_letter", "visible"), queue["dead_letter"])])
        yield from self._totals(tot)
        yield self._family("recent_completed_per_minute", f"Images finished per minute over the last "
                           f"{recent['window_s']} s.", (), [((), recent["completed_per_min"])])
        yield self._family("recent_latency_milliseconds", "Submitted-to-done latency percentiles over the last "
                           f"{recent['window_s']} s.", ("quantile",),
                           [(("0.5",), recent["latency_p50_ms"]), (("0.95",), recent["latency_p95_ms"])])
        yield from self._workers([w for w in s["workers"] if w["live"]])
        if "alerts" in s:
            active = {a["name"] for a in s["alerts"]}
            yield self._family("alert", "1 while the alert is raised (the /ops banner shows why), else 0.", ("name",),
                               [((name,), int(name in active)) for name in ALERT_NAMES])

    def _totals(self, tot: dict):
        scope = "over the instances the fleet table remembers (heartbeats expire after a day)"
        yield self._family("images_processed", f"Images finished {scope}.", ("outcome",),
                           [(("succeeded",), tot["images_succeeded"]), (("failed",), tot["images_failed"])])
        yield self._family("instance_seconds", f"Instance-seconds used {scope}.", (), [((), tot["instance_seconds"])])
        yield self._family("instance_seconds_per_image", f"Instance-seconds per finished image {scope}.", (),
                           [((), tot["instance_seconds_per_image"])])

    def _workers(self, live: list[dict]):
        def each(key):
            return [((w["instance_id"],), w[key]) for w in live]
        yield self._family("worker_images_done", "Images a live worker has finished.", ("instance_id",),
                           each("images_done"))
        yield self._family("worker_model_load_seconds", "Cold start: model load time of a live worker.",
                           ("instance_id",), each("model_load_s"))
        yield self._family("worker_resumes", "Warm starts: times a live worker was resumed from the pool.",
                           ("instance_id",), each("resumes"))
        yield self._family("worker_last_resume_seconds", "Warm start: seconds from a live worker's last "
                           "StartInstances to its polling again.", ("instance_id",), each("last_resume_s"))
        yield self._family("worker_heartbeat_age_seconds", "Seconds since a live worker's last heartbeat.",
                           ("instance_id",), each("heartbeat_age_s"))
