"""Pure arithmetic of a load run: percentiles, correctness, failures, throughput, the table.

Percentiles use linear interpolation between closest ranks (numpy's default "linear"
method): for sorted values v of length n, percentile q is read at rank (n - 1) * q / 100.

A result is correct when the expected label appears in the returned top label as a
whole-word substring, case-insensitively: "cat" matches "cat", "Cat" and "tabby cat",
but not "catamaran"; "cup" does not match "cupboard".
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from workload_generator.images import file_stem

PERCENTILES = (50, 90, 95, 99)
MAX_WRONG_EXAMPLES = 10


@dataclass(frozen=True)
class RequestResult:
    """What happened to one image: outcome, label, timing and tries."""

    filename: str
    ok: bool
    started_s: float  # since the run started
    latency_s: float  # first send to final answer, retries and polling included
    attempts: int = 1
    label: str | None = None
    reason: str | None = None  # failure reason key, e.g. "http_503", "timeout"
    image_id: str | None = None
    service_ms: float | None = None  # the service's own timings.total, when it says
    instance_id: str | None = None

    @property
    def name(self) -> str:
        """File name without extension, as in ground truth and `name:label` answers."""
        return file_stem(self.filename)

    @property
    def finished_s(self) -> float:
        return self.started_s + self.latency_s


@dataclass(frozen=True)
class FleetSample:
    """One reading of the target's /api/ops/summary."""

    t_s: float
    running: int
    pending: int
    desired: int
    visible: int
    in_flight: int
    dead_letter: int


@dataclass(frozen=True)
class Judgement:
    """Succeeded results checked against ground truth."""

    correct: int = 0
    wrong: int = 0
    unchecked: int = 0
    wrong_examples: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        checked = self.correct + self.wrong
        return self.correct / checked if checked else None


@dataclass(frozen=True)
class Summary:
    """Every number of the final report."""

    planned: int
    sent: int
    succeeded: int
    failed: int
    interrupted: bool
    failures: dict[str, int]
    retried_requests: int
    retries: int
    judgement: Judgement
    duration_s: float
    throughput_rps: float
    success_rps: float
    latency_s: dict[str, float | None]
    service_ms: dict[str, float | None]
    fleet: dict[str, int] | None

    @property
    def completed(self) -> int:
        return self.succeeded + self.failed

    def to_dict(self) -> dict:
        """JSON-ready form, derived figures included."""
        doc = asdict(self)
        doc["completed"] = self.completed
        doc["unfinished"] = self.sent - self.completed
        doc["judgement"]["accuracy"] = self.judgement.accuracy
        return doc


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) of values by linear interpolation; raise on no values."""
    return _sorted_percentile(sorted(values), q)


def _sorted_percentile(ordered: list, q: float) -> float:
    """percentile of values already sorted, so several percentiles share one sort."""
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values) -> dict[str, float | None]:
    """min, p50, p90, p95, p99, max and mean of values; all None when there are none."""
    values = list(values)
    keys = ["min", *(f"p{q}" for q in PERCENTILES), "max", "mean"]
    if not values:
        return dict.fromkeys(keys)
    ordered = sorted(values)
    stats = {"min": ordered[0]}
    stats.update({f"p{q}": _sorted_percentile(ordered, q) for q in PERCENTILES})
    stats.update({"max": ordered[-1], "mean": sum(values) / len(values)})
    return stats


def label_matches(expected: str, actual: str | None) -> bool:
    """True when expected occurs in actual as whole words, ignoring case."""
    expected = expected.strip().casefold()
    if not expected or not actual:
        return False
    return re.search(rf"(?<!\w){re.escape(expected)}(?!\w)", actual.casefold()) is not None


def judge(results, truth: dict[str, str]) -> Judgement:
    """Count succeeded results whose label matches the ground truth of their name."""
    correct = wrong = unchecked = 0
    examples = []
    for result in results:
        if not result.ok:
            continue
        expected = truth.get(result.name)
        if expected is None:
            unchecked += 1
        elif label_matches(expected, result.label):
            correct += 1
        else:
            wrong += 1
            if len(examples) < MAX_WRONG_EXAMPLES:
                examples.append({"name": result.name, "expected": expected, "got": result.label})
    return Judgement(correct, wrong, unchecked, examples)


def failure_counts(results) -> dict[str, int]:
    """Failed results by reason, most frequent first."""
    return dict(Counter(r.reason or "unknown" for r in results if not r.ok).most_common())


def fleet_peaks(samples) -> dict[str, int] | None:
    """Peak instance and queue figures over the samples; None when the target had none."""
    samples = list(samples)
    if not samples:
        return None
    return {
        "samples": len(samples),
        "peak_running": max(s.running for s in samples),
        "peak_desired": max(s.desired for s in samples),
        "peak_visible": max(s.visible for s in samples),
        "peak_in_flight": max(s.in_flight for s in samples),
        "final_running": samples[-1].running,
    }


def summarize(results, *, planned: int, sent: int, duration_s: float, truth: dict[str, str] | None = None,
              fleet=(), interrupted: bool = False) -> Summary:
    """All figures of a run from its results (any order) and fleet samples."""
    results = list(results)
    succeeded = [r for r in results if r.ok]
    rate = (lambda n: n / duration_s) if duration_s > 0 else (lambda n: 0.0)
    return Summary(
        planned=planned,
        sent=sent,
        succeeded=len(succeeded),
        failed=len(results) - len(succeeded),
        interrupted=interrupted,
        failures=failure_counts(results),
        retried_requests=sum(1 for r in results if r.attempts > 1),
        retries=sum(r.attempts - 1 for r in results),
        judgement=judge(results, truth or {}),
        duration_s=duration_s,
        throughput_rps=rate(len(results)),
        success_rps=rate(len(succeeded)),
        latency_s=distribution(r.latency_s for r in succeeded),
        service_ms=distribution(r.service_ms for r in succeeded if r.service_ms is not None),
        fleet=fleet_peaks(fleet),
    )


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _stats_line(stats: dict[str, float | None], digits: int) -> str:
    keys = ["min", *(f"p{q}" for q in PERCENTILES), "max"]
    return "  ".join(f"{key} {_number(stats[key], digits)}" for key in keys)


def _judgement_rows(judgement: Judgement) -> list[tuple[str, str]]:
    accuracy = judgement.accuracy
    rows = [("correct / wrong / unchecked",
             f"{judgement.correct} / {judgement.wrong} / {judgement.unchecked}"
             + ("" if accuracy is None else f"  ({accuracy:.1%} correct)"))]
    rows += [(f"  wrong: {e['name']}", f"expected {e['expected']!r}, got {e['got']!r}")
             for e in judgement.wrong_examples]
    return rows


def table_rows(summary: Summary) -> list[tuple[str, str]]:
    """The report as (label, value) rows."""
    rows = [("requests planned", str(summary.planned)), ("sent", str(summary.sent)),
            ("succeeded", str(summary.succeeded)), ("failed", str(summary.failed))]
    rows += [(f"  {reason}", str(count)) for reason, count in summary.failures.items()]
    if summary.interrupted:
        rows.append(("unfinished (interrupted)", str(summary.sent - summary.completed)))
    rows.append(("retried requests / retries", f"{summary.retried_requests} / {summary.retries}"))
    rows += _judgement_rows(summary.judgement)
    rows += [("duration", f"{summary.duration_s:.2f} s"),
             ("throughput", f"{summary.throughput_rps:.2f} completed/s ({summary.success_rps:.2f} succeeded/s)"),
             ("latency (s)", _stats_line(summary.latency_s, 3))]
    if summary.service_ms["p50"] is not None:
        rows.append(("service time (ms)", _stats_line(summary.service_ms, 1)))
    if summary.fleet:
        rows.append(("peak instances (running / desired)",
                     f"{summary.fleet['peak_running']} / {summary.fleet['peak_desired']}"))
    return rows


def format_table(summary: Summary, title: str = "Load report") -> str:
    """The report as an aligned plain-text table."""
    rows = table_rows(summary)
    width = max(len(label) for label, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)
