"""The report's plots as PNG files: the Pareto fronts (accuracy against parameters and FLOPs),
validation curves of the top trials against the dense baseline, rank against accuracy per
layer, and, when the sweep measured speed, accuracy against measured speed-up. Drawn with
matplotlib's object API (no pyplot state), so reports can be made from any thread."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from sweep.report.ranking import is_finished
from sweep.report.recommend import device_text
from sweep.report.schema import Report, TrialEntry
from sweep.tracking.names import trial_index

__all__ = ["PLOT_FILES", "render_plots"]

PLOT_FILES = {
    "pareto": "pareto.png",
    "curves": "curves.png",
    "ranks": "ranks.png",
    "speed": "speed.png",  # only when the sweep measured speed
}
_DPI = 100
_FRONT = "tab:orange"
_TRIAL = "tab:blue"
_BASELINE = "black"
_MODES = (
    ("N' (out)", "tab:blue", "o"),
    ("C' (in)", "tab:orange", "s"),
    ("D' (spatial)", "tab:green", "^"),
)
_MAX_COLUMNS = 4


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI)
    return path


def _finished(report: Report) -> list[TrialEntry]:
    return [e for e in report.trials if is_finished(e.status, e.params, e.best_val_acc)]


def _accuracy_floor(
    report: Report, trials: list[TrialEntry], front_ids: Sequence[str] | None = None
) -> float:
    """The lower y limit: room for the front (default: the params and FLOPs fronts) and the
    baseline; weaker trials are drawn on the bottom edge instead of squashing the
    interesting part of the plot."""
    if front_ids is None:
        front_ids = [*report.pareto_params, *report.pareto_flops]
    front = set(front_ids)
    shown = [e.best_val_acc for e in trials if e.run_id in front and e.best_val_acc is not None]
    if report.baseline is not None and report.baseline.best_val_acc is not None:
        shown.append(report.baseline.best_val_acc)
    if not shown:
        return 0.0
    low, high = min(shown), max(shown)
    return max(0.0, low - max(0.05, 0.25 * (high - low)))


XOf = Callable[[TrialEntry], "float | None"]


def _trial_points(ax: Axes, trials: list[TrialEntry], x_of: XOf, floor: float) -> None:
    """Every finished trial; those below `floor` on the bottom edge."""
    for entry in trials:
        value = x_of(entry)
        if value is None:
            continue
        accuracy = entry.best_val_acc
        below = accuracy < floor  # type: ignore[operator]
        ax.scatter(
            value,
            floor if below else accuracy,
            marker="v" if below else "o",
            s=28,
            facecolors="none" if entry.status == "stopped_early" else _TRIAL,
            edgecolors=_TRIAL,
            alpha=0.8,
            zorder=2,
            clip_on=False,
        )


def _front_line(ax: Axes, front: list[TrialEntry], x_of: XOf) -> None:
    """The front, in its order (best x first: cheapest, or fastest), as a staircase through
    its trials, each named by its index. Each step holds a trial's accuracy up to the next
    trial's x: the best accuracy on offer at that cost (or speed-up)."""
    if front:
        xs = [x_of(entry) for entry in front]
        ys = [entry.best_val_acc for entry in front]
        ax.step(xs, ys, where="post", color=_FRONT, linewidth=2, zorder=3)
        ax.scatter(xs, ys, color=_FRONT, s=46, zorder=4)
        for entry, x, y in zip(front, xs, ys, strict=True):
            ax.annotate(
                trial_index(entry.trial_name),
                (x, y),
                textcoords="offset points",
                xytext=(4, -11),
                fontsize=7,
                color="dimgray",
            )


def _best_ring(ax: Axes, report: Report, x_of: XOf) -> None:
    best = report.best
    if best is not None and x_of(best) is not None:
        ax.scatter(
            x_of(best),
            best.best_val_acc,
            s=160,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=1.8,
            zorder=5,
        )


def _pareto_panel(ax: Axes, report: Report, trials: list[TrialEntry], cost: str) -> None:
    floor = _accuracy_floor(report, trials)
    front_ids = report.pareto_params if cost == "params" else report.pareto_flops
    by_id = {entry.run_id: entry for entry in trials}

    def x_of(entry: TrialEntry) -> float | None:
        return getattr(entry, cost)

    _trial_points(ax, trials, x_of, floor)
    _front_line(ax, [by_id[run_id] for run_id in front_ids if run_id in by_id], x_of)
    _best_ring(ax, report, x_of)
    baseline = report.baseline
    if baseline is not None and getattr(baseline, cost) and baseline.best_val_acc is not None:
        ax.scatter(
            getattr(baseline, cost),
            baseline.best_val_acc,
            marker="*",
            s=220,
            color=_BASELINE,
            zorder=5,
        )
    ax.set_xscale("log")
    ax.set_ylim(bottom=floor, top=min(1.0, ax.get_ylim()[1]) + 0.005)
    ax.set_xlabel("parameters" if cost == "params" else "FLOPs (multiply-adds per image)")
    ax.set_ylabel("best validation accuracy")
    ax.set_title(f"accuracy vs {'parameters' if cost == 'params' else 'FLOPs'}")
    ax.grid(True, which="both", alpha=0.3)


def _legend(dense_label: str) -> list[Line2D]:
    return [
        Line2D([], [], color=_FRONT, marker="o", linewidth=2, label="Pareto front"),
        Line2D([], [], color=_TRIAL, marker="o", linestyle="", label="trial (ran to max_t)"),
        Line2D(
            [],
            [],
            color=_TRIAL,
            marker="o",
            markerfacecolor="none",
            linestyle="",
            label="trial stopped early by ASHA",
        ),
        Line2D(
            [],
            [],
            color="tab:red",
            marker="o",
            markerfacecolor="none",
            markersize=11,
            linestyle="",
            label="best trial",
        ),
        Line2D([], [], color=_BASELINE, marker="*", markersize=12, linestyle="", label=dense_label),
        Line2D([], [], color=_TRIAL, marker="v", linestyle="", label="below the axis"),
    ]


def plot_pareto(report: Report, path: Path) -> Path:
    trials = _finished(report)
    figure = Figure(figsize=(12, 4.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    _pareto_panel(left, report, trials, "params")
    _pareto_panel(right, report, trials, "flops")
    handles = _legend("dense baseline")
    figure.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=8, frameon=False)
    figure.suptitle(f"sweep {report.sweep.name}: Pareto fronts" + _partial(report))
    return _save(figure, path)


def plot_speed(report: Report, path: Path) -> Path:
    """Val acc against the measured speed-up at the first deployment batch size: a ratio of
    two latencies timed in one process, the dense model at 1x by definition."""
    trials = _finished(report)
    batch = report.speed_batch
    by_id = {entry.run_id: entry for entry in trials}

    def x_of(entry: TrialEntry) -> float | None:
        return entry.speedup_at(batch)

    figure = Figure(figsize=(12, 4.6), layout="constrained")
    ax = figure.subplots()
    floor = _accuracy_floor(report, trials, report.pareto_speedup)
    _trial_points(ax, trials, x_of, floor)
    _front_line(ax, [by_id[run_id] for run_id in report.pareto_speedup if run_id in by_id], x_of)
    _best_ring(ax, report, x_of)
    ax.axvline(1.0, color=_BASELINE, linestyle=":", linewidth=1.2, zorder=1)
    baseline = report.baseline
    if baseline is not None and baseline.best_val_acc is not None:
        ax.scatter(1.0, baseline.best_val_acc, marker="*", s=220, color=_BASELINE, zorder=5)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylim(bottom=floor, top=min(1.0, ax.get_ylim()[1]) + 0.005)
    ax.set_xlabel(f"measured speed-up at batch {batch} (dense latency / trial latency)")
    ax.set_ylabel("best validation accuracy")
    ax.grid(True, which="both", alpha=0.3)
    handles = _legend("dense reference (1x, dotted: the dense speed)")
    figure.legend(handles=handles, loc="outside lower center", ncols=6, fontsize=8, frameon=False)
    where = device_text(report.deploy) if report.deploy else "?"
    figure.suptitle(
        f"sweep {report.sweep.name}: accuracy against measured speed-up ({where}, batch {batch})"
        + _partial(report)
    )
    return _save(figure, path)


def _partial(report: Report) -> str:
    return f" (partial: sweep {report.sweep.state})" if report.sweep.partial else ""


def plot_curves(report: Report, path: Path) -> Path:
    figure = Figure(figsize=(12, 4.4), layout="constrained")
    ax = figure.subplots()
    lows = []
    for index, curve in enumerate(report.curves):
        is_baseline = report.baseline is not None and curve.run_id == report.baseline.run_id
        ax.plot(
            curve.epochs,
            curve.val_acc,
            marker="o",
            markersize=4,
            linewidth=2.6 if is_baseline else 1.6,
            color=_BASELINE if is_baseline else f"C{index % 10}",
            linestyle="--" if is_baseline else "-",
            label=curve.label,
        )
        if curve.val_acc:
            lows.append(min(curve.val_acc))
    target = report.sweep.target_accuracy
    if target is not None:
        ax.axhline(
            target, color="tab:red", linestyle=":", linewidth=1.4, label=f"target {target:g}"
        )
    if lows:
        ax.set_ylim(bottom=max(0.0, min(lows) - 0.02), top=1.005)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"validation accuracy per epoch: top {len(report.curves) - (report.baseline is not None)} "
        f"trials vs the dense baseline" + _partial(report)
    )
    return _save(figure, path)


def plot_ranks(report: Report, path: Path) -> Path:
    trials = _finished(report)
    layers = report.sweep.layers or ["(no decomposed layer)"]
    rows = math.ceil(len(layers) / _MAX_COLUMNS)
    columns = math.ceil(len(layers) / rows)  # 5 layers: 3 + 2 panels, not 4 + 1
    figure = Figure(figsize=(12, 0.6 + 3.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    floor = _accuracy_floor(report, trials)
    for index, ax in enumerate(axes.flat):
        if index >= len(layers):
            ax.set_visible(False)
            continue
        layer = layers[index]
        plotted = 0
        for mode, (label, colour, marker) in enumerate(_MODES):
            points = [(e.ranks[layer][mode], e.best_val_acc) for e in trials if layer in e.ranks]
            plotted += len(points)
            ax.scatter(
                [x for x, _ in points],
                [max(floor, y) for _, y in points],  # type: ignore[type-var]
                color=colour,
                marker=marker,
                s=22,
                alpha=0.75,
                label=label,
                clip_on=False,
            )
        if plotted:  # a log axis without data cannot draw (a sweep stopped before any result)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_title(layer, fontsize=10)
        ax.set_xlabel("rank")
        ax.grid(True, which="both", alpha=0.3)
        if index % columns == 0:
            ax.set_ylabel("best validation accuracy")
    axes.flat[0].set_ylim(bottom=floor, top=1.005)
    handles = [
        Line2D([], [], color=c, marker=m, linestyle="", label=label) for label, c, m in _MODES
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    figure.suptitle(
        "rank against best validation accuracy, per layer (weaker trials on the bottom edge)"
        + _partial(report)
    )
    return _save(figure, path)


def render_plots(report: Report, folder: Path) -> dict[str, Path]:
    """Write every plot into `folder` (the speed plot only when speed was measured); returns
    plot name -> file."""
    plots = {
        "pareto": plot_pareto(report, folder / PLOT_FILES["pareto"]),
        "curves": plot_curves(report, folder / PLOT_FILES["curves"]),
        "ranks": plot_ranks(report, folder / PLOT_FILES["ranks"]),
    }
    if report.measured_speed:
        plots["speed"] = plot_speed(report, folder / PLOT_FILES["speed"])
    return plots
