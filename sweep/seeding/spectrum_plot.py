"""One PNG of the mode spectra in a seed file: how fast each mode's energy is captured, where
the energy thresholds lie and which ranks the candidates chose.

Each panel plots, per mode, the energy left out by the best rank-r approximation of that mode,
1 - sum(s_i^2, i <= r) / sum(s_i^2), against r, both on log scales. On that scale the usual
thresholds (0.8 ... 0.99, i.e. 20 % ... 1 % left out) are evenly spaced instead of crowded under
the top edge, a flat (untrained) spectrum shows as a slow straight descent and a trained one as
a steep drop, and modes of 9 and of 128 values share one axis.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from sweep.seeding.seed_file import LayerEntry, SeedFile

__all__ = ["plot_spectra"]

# (mode, legend label, colour, line style): "in" dashed because for square convs the out and
# in spectra often coincide, and a solid line would hide the other.
_MODES = (
    ("out", "out (N)", "tab:blue", "-"),
    ("in", "in (C)", "tab:orange", "--"),
    ("spatial", "spatial (D)", "tab:green", "-"),
)
_MAX_COLUMNS = 4
_PANEL_SIZE = (3.4, 2.6)  # inches: legible at 9-point titles for up to ~20 panels (5 rows)
_LEFT, _RIGHT, _TOP, _BOTTOM = 0.6, 0.15, 0.55, 0.75  # figure margins, inches
_FLOOR = 1e-4  # energy left out below 0.01 % is no longer a rank decision


def _left_out(spectrum: list[float]) -> np.ndarray:
    """Energy fraction left out at ranks 1..len (the tail sum, not 1 - cumsum, keeps small
    values accurate); the full rank leaves 0, which the caller lifts to the plot's floor."""
    energy = np.asarray(spectrum, dtype=np.float64) ** 2
    total = energy.sum()
    if total == 0.0:
        return np.zeros(len(spectrum))
    tails = np.cumsum(energy[::-1])[::-1]  # tails[r] = sum of s_i^2 for i >= r (0-based)
    return np.append(tails[1:], 0.0) / total


def _mode_values(layer: LayerEntry, mode: str) -> list[float]:
    return {"out": layer.spectra.out, "in": layer.spectra.in_, "spatial": layer.spectra.spatial}[
        mode
    ]


def _floor(thresholds: tuple[float, ...]) -> float:
    """The bottom of every panel's y axis: below the lowest threshold line."""
    return min([_FLOOR, *(0.5 * (1.0 - t) for t in thresholds if t < 1.0)])


def _draw_layer(
    ax: Axes, name: str, layer: LayerEntry, thresholds: tuple[float, ...], first_in_row: bool
) -> None:
    floor = _floor(thresholds)
    longest = 1
    for index, (mode, _, colour, style) in enumerate(_MODES):
        left_out = np.maximum(_left_out(_mode_values(layer, mode)), floor)
        ranks = np.arange(1, left_out.size + 1)
        longest = max(longest, left_out.size)
        ax.plot(ranks, left_out, color=colour, linestyle=style, linewidth=1.2, marker=".",
                markersize=2.5)  # fmt: skip
        chosen = sorted({candidate.ranks[index] for candidate in layer.candidates})
        at = [left_out[rank - 1] for rank in chosen]
        ax.plot(chosen, at, linestyle="none", marker="o", markersize=5, markerfacecolor="none",
                markeredgecolor=colour, markeredgewidth=1.2)  # fmt: skip
    labels = ax.get_yaxis_transform()  # x in axes fractions, y in data
    drawn = [threshold for threshold in thresholds if threshold < 1.0]
    # One collection for all the threshold lines: an artist each cost more to draw.
    ax.hlines([1.0 - t for t in drawn], 0, 1, transform=labels, colors="0.55", linestyles=":",
              linewidth=0.9)  # fmt: skip
    for threshold in drawn if first_in_row else ():
        # Left edge: there every curve is still near 1, well above the threshold lines. On the
        # first panel of a row only: the rows share their y axis, so the lines continue.
        ax.text(0.02, 1.0 - threshold, f"{threshold:g}", transform=labels, fontsize=6,
                color="0.4", va="bottom")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlim(0.8, longest * 1.1)
    # At most 7 ticks (every other power of 2 on wide layers): each tick is a mark, a grid line
    # and a label to lay out and draw, 52 panels over.
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=7))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    # Minor ticks on log axes cost most of the drawing time of a 20-panel figure (each tick
    # label is measured for the layout) and add nothing the major grid does not show.
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    ax.tick_params(labelsize=7)
    ax.grid(True, which="major", alpha=0.25)
    n, c, kh, kw = layer.shape
    # y given: matplotlib then skips placing the title clear of each panel's decorations, a
    # layout pass per panel (a fifth of a 52-panel figure's drawing time).
    ax.set_title(f"{name}  {n}x{c}x{kh}x{kw}", fontsize=9, y=1.0)


def _legend_handles() -> list[Line2D]:
    handles = [
        Line2D([], [], color=colour, linestyle=style, label=label)
        for _, label, colour, style in _MODES
    ]
    handles.append(Line2D([], [], color="0.3", linestyle="none", marker="o", markerfacecolor="none",
                          label="candidate ranks"))  # fmt: skip
    handles.append(Line2D([], [], color="0.55", linestyle=":", label="energy threshold"))
    return handles


def _columns(panels: int) -> int:
    """Up to 4 columns, with as few empty panels as possible (5 -> 3 x 2, 7 -> 4 x 2)."""
    if panels <= _MAX_COLUMNS:
        return panels
    return min(range(_MAX_COLUMNS, 2, -1), key=lambda columns: -panels % columns)


def plot_spectra(seed: SeedFile, path: str | os.PathLike[str]) -> Path:
    """Write one PNG with a panel per layer of `seed` (x: rank, y: energy left out per mode,
    thresholds dotted, candidate ranks circled) and return its path."""
    names = seed.layer_names()
    columns = _columns(len(names))
    rows = math.ceil(len(names) / columns)
    width = _PANEL_SIZE[0] * columns
    height = _PANEL_SIZE[1] * rows + _TOP + _BOTTOM
    # A Figure on an Agg canvas, outside pyplot: no display, no global figure registry, so
    # nothing stays open after saving (there is no pyplot figure to close).
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    # Fixed margins in inches rather than constrained layout, which measured every tick label
    # of every panel and took most of the drawing time (panels have a fixed size anyway).
    # Every panel has the same y axis (energy left out, down to the same floor): shared, its
    # tick labels are drawn on the left column only (text is most of the drawing time).
    axes = figure.subplots(
        rows,
        columns,
        squeeze=False,
        sharey=True,
        gridspec_kw={
            "left": _LEFT / width,
            "right": 1.0 - _RIGHT / width,
            "top": 1.0 - _TOP / height,
            "bottom": _BOTTOM / height,
            "wspace": 0.28,
            "hspace": 0.5,
        },
    )
    shared = axes[0, 0]
    shared.set_yscale("log")
    shared.set_ylim(_floor(seed.thresholds) * 0.8, 1.2)
    for index, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
        _draw_layer(ax, name, seed.layers[name], seed.thresholds, index % columns == 0)
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("energy left out", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("rank", fontsize=8)
    thresholds = ", ".join(f"{t:g}" for t in seed.thresholds) or "none"
    figure.suptitle(
        f"Mode spectra of {seed.model.name} on {seed.data.name} (baseline val_acc "
        f"{seed.baseline.val_acc:.3f}; {seed.method} thresholds {thresholds})",
        fontsize=10,
        y=1.0 - 0.12 / height,
        va="top",
    )
    figure.legend(
        handles=_legend_handles(),
        loc="lower center",
        bbox_to_anchor=(0.5, 0.04 / height),
        ncols=5,
        fontsize=8,
        frameon=False,
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", dpi=110)
    return target
