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
    speed_batch,
    terminal_markdown,
    times,
)
from sweep.report.schema import Report
from sweep.tracking.names import trial_index

_COLUMNS = ("trial", "status", "ranks", "params", "FLOPs", "×", "acc", "ep→t", "s→t", "ep")
_TERSE_STATUS = {"completed": "done", "stopped_early": "ASHA"}


def trials_table(report: Report) -> Table:
    # No padding: the box's one-character separators keep columns apart, and ten columns
    # then fit 80 characters (the speed-up column, when speed was measured, wraps the ranks).
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=0, header_style="bold")
    batch = speed_batch(report)
    columns = _COLUMNS if batch is None else (*_COLUMNS, "speed")
    for column in columns:
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
            *([] if batch is None else [times(e.speedup_at(batch))]),
        )
    return table


def terminal_view(report: Report, folder: Path) -> list[RenderableType]:
    """What `tucker-sweep report` prints, in order."""
    target = report.sweep.target_accuracy
    batch = speed_batch(report)
    speed = (
        ""
        if batch is None
        else "; ▲ on the accuracy/measured speed-up front; speed the measured speed-up at "
        f"batch {batch} (the dense model's latency over the trial's)"
    )
    legend = (
        "Best accuracy first. status: done (ran to max_t), ASHA (stopped early by ASHA), "
        "failed; ◆ on the accuracy/params Pareto front, ◇ on the accuracy/FLOPs front; "
        f"× compression; acc best val acc; ep→t, s→t epochs, seconds to the target accuracy "
        f"{'' if target is None else f'{target:g} '}(– never); ep epochs run{speed}."
    )
    return [
        Markdown(terminal_markdown(report, folder)),
        Markdown(f"## Trials\n\n{legend}\n"),
        trials_table(report),
    ]
