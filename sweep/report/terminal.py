"""The report as `tucker-sweep report` shows it: the Markdown of the terminal template, then the
trials as a rich table that fits a narrow terminal (a Markdown table gives every column the
same share). Builds the renderables; the CLI prints them."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import RenderableType
from rich.markdown import Markdown
from rich.table import Table

from sweep.report.render import (
    acc,
    count,
    flops,
    number,
    pareto_marks,
    ranks,
    seconds,
    terminal_markdown,
    times,
)
from sweep.report.schema import Report
from sweep.tracking.names import trial_index

_COLUMNS = ("trial", "status", "ranks", "params", "FLOPs", "×", "acc", "ep→t", "s→t", "ep")
_TERSE_STATUS = {"completed": "done", "stopped_early": "ASHA"}


def trials_table(report: Report) -> Table:
    # No padding: the box's one-character separators keep columns apart, and ten columns
    # then fit 80 characters.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=0, header_style="bold")
    for column in _COLUMNS:
        table.add_column(
            column,
            justify="left" if column in ("trial", "status", "ranks") else "right",
            no_wrap=column != "ranks",
        )
    for e in report.trials:
        marks = pareto_marks(e)
        table.add_row(
            trial_index(e.trial_name) + (f" {marks}" if marks else ""),
            _TERSE_STATUS.get(e.status, e.status),
            "  ".join(ranks(r) for r in e.ranks.values()),  # one line if there is room
            count(e.params),
            flops(e.flops).replace(" ", ""),
            times(e.compression).replace(".00x", "x"),
            acc(e.best_val_acc),
            number(e.epochs_to_target),
            seconds(e.seconds_to_target).replace(" s", "s"),
            number(e.epochs_run),
        )
    return table


def terminal_view(report: Report, folder: Path) -> list[RenderableType]:
    """What `tucker-sweep report` prints, in order."""
    target = report.sweep.target_accuracy
    legend = (
        "Best accuracy first. status: done (ran to max_t), ASHA (stopped early by ASHA), "
        "failed; ◆ on the accuracy/params Pareto front, ◇ on the accuracy/FLOPs front; "
        f"× compression; acc best val acc; ep→t, s→t epochs, seconds to the target accuracy "
        f"{'' if target is None else f'{target:g} '}(– never); ep epochs run."
    )
    return [
        Markdown(terminal_markdown(report, folder)),
        Markdown(f"## Trials\n\n{legend}\n"),
        trials_table(report),
    ]
