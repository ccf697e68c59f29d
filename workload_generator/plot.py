"""One figure of a run: latency histogram, completions over time, instances over time."""
from __future__ import annotations

import logging

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workload_generator.report import FleetSample, RequestResult, distribution

logger = logging.getLogger(__name__)


def _note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="grey")


def plot_latency(axes, results: list[RequestResult]) -> None:
    """Histogram of successful latencies with p50 and p95 marked."""
    latencies = [r.latency_s for r in results if r.ok]
    axes.set(title="Latency of successful requests", xlabel="seconds", ylabel="requests")
    if not latencies:
        _note(axes, "no successful requests")
        return
    axes.hist(latencies, bins=min(40, max(5, len(latencies) // 3)), color="tab:blue", alpha=0.8)
    marks = distribution(latencies)
    for q, style in ((50, "--"), (95, ":")):
        axes.axvline(marks[f"p{q}"], color="black", linestyle=style, label=f"p{q}")
    axes.legend()


def _steps(times: list[float]) -> tuple[list[float], list[int]]:
    """Cumulative-count step points of sorted event times, starting at (0, 0)."""
    return [0.0, *times], list(range(len(times) + 1))


def plot_completions(axes, results: list[RequestResult], duration_s: float) -> None:
    """Cumulative succeeded and failed requests over the run."""
    axes.set(title="Completions over time", xlabel="seconds since start", ylabel="requests completed")
    for ok, colour, name in ((True, "tab:green", "succeeded"), (False, "tab:red", "failed")):
        times = sorted(r.finished_s for r in results if r.ok is ok)
        if times or ok:
            xs, ys = _steps(times)
            axes.step([*xs, duration_s], [*ys, ys[-1]], where="post", color=colour, label=name)
    axes.set_xlim(0, max(duration_s, 1e-3))
    axes.legend(loc="upper left")


def plot_fleet(axes, samples: list[FleetSample], duration_s: float) -> None:
    """Running, pending and desired instances, with the queue backlog on a second axis."""
    axes.set(title="Fleet over time", xlabel="seconds since start", ylabel="instances")
    if not samples:
        _note(axes, "target has no /api/ops/summary")
        return
    times = [s.t_s for s in samples]
    fields = (("running", "tab:blue", "-", 3), ("pending", "tab:orange", "-", 1.5), ("desired", "tab:purple", "--", 1.5))
    for field, colour, style, width in fields:  # desired is dashed so running shows beneath it
        axes.step(times, [getattr(s, field) for s in samples], where="post", color=colour, linestyle=style,
                  linewidth=width, label=field)
    peak = max(max(getattr(s, field) for field, *_ in fields) for s in samples)
    axes.set_ylim(0, peak * 1.3 + 1)  # room above the lines for the legend
    axes.yaxis.get_major_locator().set_params(integer=True)
    queue = [s.visible + s.in_flight for s in samples]
    backlog = axes.twinx()
    backlog.plot(times, queue, color="grey", alpha=0.6, linestyle=":", marker=".", label="queue backlog")
    backlog.set_ylim(0, max(max(queue), 1) * 1.3)
    backlog.set_ylabel("messages (visible + in flight)")
    lines = axes.get_legend_handles_labels()[0] + backlog.get_legend_handles_labels()[0]
    axes.legend(lines, [line.get_label() for line in lines], loc="upper right", ncol=2)
    axes.set_xlim(0, max(duration_s, times[-1], 1e-3))


def write_plot(path, results: list[RequestResult], samples: list[FleetSample], duration_s: float,
               title: str = "Load run") -> None:
    """Draw the three panels into one PNG at path (Agg canvas: no display needed)."""
    figure = Figure(figsize=(16, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    latency, completions, fleet = figure.subplots(1, 3)
    plot_latency(latency, results)
    plot_completions(completions, results, duration_s)
    plot_fleet(fleet, samples, duration_s)
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    logger.info("wrote plot %s", path)
