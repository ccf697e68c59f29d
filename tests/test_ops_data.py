"""The ops aggregation without backends: windows and steps, percentiles, buckets, spans, the cache."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from web_tier.opsdata import (
    DecisionTail, TtlCache, Window, bucket_gauges, bucket_results, choose_step, decision_row, iso,
    notable_decisions, parse_window, percentile,
)

NOW = 1_800_000_003.0  # not on a step boundary on purpose


@pytest.mark.parametrize("text, seconds", [
    ("300", 300), ("90s", 90), ("5m", 300), ("15m", 900), ("1h", 3600), ("1.5h", 5400), (" 24H ", 86400),
    (None, 900), ("", 900),
])
def test_parse_window_accepts_seconds_and_units(text, seconds):
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["abc", "5 minutes", "-5m", "10s", "2d", "1e3"])
def test_parse_window_refuses_garbage_and_out_of_range(text):
    with pytest.raises(ValueError):
        parse_window(text)


@pytest.mark.parametrize("window_s", [300, 900, 3600, 3 * 3600, 6 * 3600, 86400])
def test_common_windows_get_60_to_120_points_on_cloudwatch_periods(window_s):
    step = choose_step(window_s)
    assert 60 <= window_s / step <= 120
    assert step in (1, 5, 10, 30) or step % 60 == 0  # what CloudWatch accepts


def test_window_ends_on_the_last_whole_step_before_now():
    window = Window.ending_at(NOW, 900)
    assert (window.step_s, window.points) == (10, 90)
    assert window.end == 1_800_000_000.0 and window.start == window.end - 900
    assert window.index(window.start) == 0
    assert window.index(window.start + 9.999) == 0
    assert window.index(window.start + 10) == 1
    assert window.index(window.end - 0.001) == 89
    assert window.index(window.end) is None  # the step still in progress is not shown
    assert window.index(window.start - 0.001) is None
    assert window.timestamps()[0] == iso(window.start) and len(window.timestamps()) == 90


@pytest.mark.parametrize("values", [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0],
                                    list(np.random.default_rng(7).exponential(800, 57))])
@pytest.mark.parametrize("q", [50, 95, 99])
def test_percentile_matches_numpy(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_none():
    assert percentile([], 50) is None


def _result(completed_at: float, latency_s: float, status: str = "SUCCEEDED") -> dict:
    return {"status": status, "submitted_at": iso(completed_at - latency_s), "completed_at": iso(completed_at)}


def test_results_land_in_their_step_with_rates_and_percentiles():
    window = Window.ending_at(NOW, 300)  # 5 s steps
    s = window.start
    results = [
        _result(s + 51, 1.0), _result(s + 52, 2.0), _result(s + 53, 4.0, "FAILED"),  # step 10
        _result(s + 101, 0.5),                                                        # step 20
        _result(s - 1, 9.0), _result(window.end + 1, 9.0),                            # outside
        {"status": "SUCCEEDED", "completed_at": iso(s + 102)},                        # no submitted_at
    ]
    series, inside = bucket_results(window, results)
    assert len(inside) == 5
    assert series["completed_per_min"][10] == 36.0  # 3 in 5 s
    assert series["failed_per_min"][10] == 12.0
    assert series["latency_p50_ms"][10] == 2000.0
    assert series["latency_p95_ms"][10] == 3800.0
    assert series["completed_per_min"][20] == 24.0  # counted, although its latency is unknown
    assert series["latency_p50_ms"][20] == series["latency_p95_ms"][20] == 500.0
    assert series["completed_per_min"][11] == 0.0 and series["latency_p50_ms"][11] is None
    assert sum(series["completed_per_min"]) * window.step_s / 60 == 5


def test_gauges_take_the_step_maximum_and_leave_gaps_as_none():
    window = Window.ending_at(NOW, 300)

    def at(offset):
        return datetime.fromtimestamp(window.start + offset, timezone.utc)
    series = {"QueueVisible": [(at(16), 7.0), (at(18), 9.0), (at(21), 4.0)], "RunningInstances": [(at(-5), 3.0)]}
    gauges = bucket_gauges(window, series)
    assert gauges["queue_visible"][3] == 9.0 and gauges["queue_visible"][4] == 4.0
    assert gauges["queue_visible"][5] is None
    assert gauges["instances_running"] == [None] * window.points  # before the window
    assert set(gauges) == {"queue_visible", "queue_in_flight", "dead_letter", "instances_desired",
                           "instances_running"}


def test_decisions_show_the_latest_tick_then_only_changes():
    ticks = [{"at": iso(NOW - 30 + i), "desired": i, "changed": i == 3, "backlog": 5,
              "launched": ["i-new"] if i == 3 else [], "terminated": [], "errors": []} for i in range(10)]
    ticks[5]["errors"] = ["launch 1: throttled"]
    rows = notable_decisions(ticks, limit=20)
    assert [r["desired"] for r in rows] == [9, 5, 3]
    assert rows[2]["action"] == "launch i-new" and rows[2]["changed"]
    assert rows[1]["action"] == "error: launch 1: throttled"
    assert rows[0]["action"] == "none" and rows[0]["inputs"] == {"backlog": 5}


def test_decision_row_describes_terminations():
    row = decision_row({"at": "x", "desired": 0, "changed": True, "visible": 0, "in_flight": 0,
                        "terminated": [{"id": "i-1", "reason": "no heartbeat for 130 s"}]})
    assert row["action"] == "terminate i-1 (no heartbeat for 130 s)"
    assert row["inputs"] == {"visible": 0, "in_flight": 0}


def test_cache_keeps_values_for_its_ttl():
    now = [0.0]
    cache = TtlCache(2.0, clock=lambda: now[0])
    calls = []
    compute = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert cache.get("k", compute) == 1
    now[0] = 1.9
    assert cache.get("k", compute) == 1
    now[0] = 2.0
    assert cache.get("k", compute) == 2
    assert cache.get("other", compute) == 3


def test_cache_computes_once_for_concurrent_askers():
    cache = TtlCache(5.0)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return "value"
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(cache.get("k", slow))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == ["value"] * 8 and len(calls) == 1


def test_cache_drops_expired_keys():
    now = [0.0]
    cache = TtlCache(1.0, clock=lambda: now[0])
    for i in range(50):
        now[0] = float(i)
        cache.get(("window", i), lambda: i)
    assert len(cache._entries) <= 2 and len(cache._key_locks) <= 2


class _Ticks:
    """An in-memory stand-in for FleetTable.all on decisions: keys >= since_key, in key order."""

    def __init__(self):
        self.docs: dict[str, dict] = {}
        self.asked: list[str] = []

    def add(self, at: float) -> None:
        self.docs[iso(at)] = {"at": iso(at), "time": at}

    def all(self, kind, since_key=None):
        assert kind == "decision"
        self.asked.append(since_key)
        return [self.docs[k] for k in sorted(self.docs) if k >= since_key]


def test_decision_tail_reads_only_new_ticks_and_forgets_old_ones():
    ticks = _Ticks()
    for t in range(0, 100, 2):
        ticks.add(NOW - 100 + t)
    tail = DecisionTail(ticks, lookback_s=60, overlap_s=10)
    first = tail.read(NOW)
    assert [d["time"] for d in first] == [NOW - 60 + t for t in range(0, 60, 2)]
    ticks.add(NOW + 1)
    ticks.add(NOW - 5)  # written late: an eventually consistent read had not shown it
    second = tail.read(NOW + 2)
    assert ticks.asked[-1] == iso(NOW - 2 - 10)  # newest seen minus the overlap, not the whole lookback
    assert [d["time"] for d in second][-3:] == [NOW - 4, NOW - 2, NOW + 1]
    assert NOW - 5 in [d["time"] for d in second] and second[0]["time"] == NOW - 58
