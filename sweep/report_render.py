"""The report as text: Markdown (what the terminal shows), one self-contained HTML file (the
Markdown rendered, plots embedded as base64 PNG, inline CSS, nothing fetched) and JSON."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from sweep.report_schema import Report, TrialEntry, report_json_schema

__all__ = ["render_html", "render_markdown", "report_json", "schema_json", "terminal_view"]

_STATUS_TEXT = {
    "completed": "completed",
    "stopped_early": "stopped early",
    "failed": "failed",
    "running": "running",
    "interrupted": "interrupted",
}
_PLOT_TITLES = {
    "pareto": "Pareto fronts: accuracy against parameters and FLOPs",
    "curves": "Validation curves: top trials against the dense baseline",
    "ranks": "Rank against accuracy, per layer",
}


def _acc(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def _count(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _flops(value: int | None) -> str:
    if value is None:
        return "–"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return str(value)


def _ranks(ranks: Sequence[int] | None) -> str:
    return "–" if ranks is None else "×".join(map(str, ranks))


def _delta(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.2f} pt"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [line(header), "|" + "|".join("---" for _ in header) + "|"]
    lines.extend(line(row) for row in rows)
    return lines


def _name(entry: TrialEntry) -> str:
    return f"`{entry.trial_name}`"


def _headline(report: Report) -> list[str]:
    lines = []
    best, baseline = report.best, report.baseline
    base_acc = baseline.best_val_acc if baseline else None
    if best is None:
        lines.append("- **Best trial**: none has finished yet.")
    else:
        delta = ""
        if base_acc is not None and best.best_val_acc is not None:
            change = _delta(best.best_val_acc - base_acc)
            delta = f" ({change} vs the dense baseline's {_acc(base_acc)})"
        lines.append(
            f"- **Best trial** {_name(best)}: val acc **{_acc(best.best_val_acc)}**{delta}, "
            f"{_int(best.params)} params ({_times(best.compression)} compression), "
            f"{_flops(best.flops)} FLOPs ({_times(best.flops_reduction)} fewer)."
        )
    recommended = report.recommended
    if recommended.trial is None:
        lines.append(f"- **Recommended ranks**: none ({recommended.note}).")
    else:
        trial = recommended.trial
        lines.append(
            f"- **Recommended ranks**: {_name(trial)}, val acc **{_acc(trial.best_val_acc)}** at "
            f"**{_times(trial.compression)}** compression ({recommended.note})."
        )
    lines.append(f"- **Convergence**: {report.convergence.summary}")
    asha = report.asha
    if asha.trial_epochs_full:
        lines.append(
            f"- **ASHA** ran {asha.trial_epochs_run} of {asha.trial_epochs_full} trial-epochs "
            f"({_times(asha.saving_factor)} saving, {100 * (asha.fraction_saved or 0):.0f}% "
            f"of the epochs not run)."
        )
    return lines


def _recommended_plan(report: Report) -> list[str]:
    trial = report.recommended.trial
    if trial is None:
        return []
    lines = ["## Recommended rank plan", ""]
    lines.append(
        f"{report.recommended.note}: {_name(trial)} (lr {trial.lr:.4g}, init {trial.init})."
    )
    lines.append("")
    lines += _table(
        ["layer", "ranks (N', C', D')"],
        [[f"`{layer}`", _ranks(r)] for layer, r in trial.ranks.items()],
    )
    lines += [
        "",
        "As the `ranks:` entry of a `tucker-sweep train` config:",
        "",
        "```yaml",
        "ranks:",
        *(f"  {layer}: [{', '.join(map(str, r))}]" for layer, r in trial.ranks.items()),
        "```",
    ]
    return lines


def _side_by_side(report: Report) -> list[str]:
    columns = []
    if report.baseline is not None:
        columns.append(("dense baseline", report.baseline))
    if report.best is not None:
        columns.append((f"best trial {report.best.trial_name.rsplit('_', 1)[-1]}", report.best))
    trial = report.recommended.trial
    if trial is not None and (report.best is None or trial.run_id != report.best.run_id):
        columns.append((f"recommended {trial.trial_name.rsplit('_', 1)[-1]}", trial))
    if not columns:
        return []
    base_acc = report.baseline.best_val_acc if report.baseline else None

    def delta(entry: object) -> str:
        accuracy = getattr(entry, "best_val_acc", None)
        if base_acc is None or accuracy is None or entry is report.baseline:
            return "–"
        return _delta(accuracy - base_acc)

    rows = [
        ["best val acc", *(_acc(e.best_val_acc) for _, e in columns)],
        ["accuracy vs dense", *(delta(e) for _, e in columns)],
        ["params", *(_int(e.params) for _, e in columns)],
        [
            "compression",
            *("1.00x" if e is report.baseline else _times(e.compression) for _, e in columns),
        ],
        ["FLOPs", *(_flops(e.flops) for _, e in columns)],
        [
            f"epochs to {report.sweep.target_accuracy:g}"
            if report.sweep.target_accuracy
            else "epochs to target",
            *(_count(e.epochs_to_target) for _, e in columns),
        ],
        ["seconds to target", *(_seconds(e.seconds_to_target) for _, e in columns)],
        ["epochs run", *(_count(e.epochs_run) for _, e in columns)],
    ]
    return ["## Dense baseline side by side", "", *_table(["", *(n for n, _ in columns)], rows)]


def _convergence(report: Report) -> list[str]:
    c = report.convergence
    rows = [
        [
            "dense baseline",
            _count(c.baseline_epochs_to_target),
            _seconds(c.baseline_seconds_to_target),
            "–",
        ],
        [
            "Tucker trials (median of those that reached it)",
            _count(c.median_epochs_to_target),
            _seconds(c.median_seconds_to_target),
            f"{c.trials_reached} of {c.trials_considered}",
        ],
        [
            "best trial",
            _count(c.best_trial_epochs_to_target),
            _seconds(report.best.seconds_to_target if report.best else None),
            "–",
        ],
    ]
    return [
        "## Convergence: do small ranks converge faster?",
        "",
        c.summary,
        "",
        *_table(["", "epochs to target", "seconds to target", "reached"], rows),
    ]


def _plan(entry: TrialEntry) -> str:
    return " · ".join(_ranks(r) for r in entry.ranks.values())


def _short(entry: TrialEntry) -> str:
    return entry.trial_name.rsplit("_", 1)[-1]


def _front(report: Report, run_ids: list[str], cost: str) -> list[str]:
    by_id = {entry.run_id: entry for entry in report.trials}
    rows = []
    for run_id in run_ids:
        e = by_id[run_id]
        rows.append(
            [
                _short(e),
                _int(e.params),
                _flops(e.flops),
                _times(e.compression),
                _acc(e.best_val_acc),
                _plan(e),
            ]
        )
    title = "parameters" if cost == "params" else "FLOPs"
    return [
        f"## Pareto front: accuracy against {title}",
        "",
        *_table(["trial", "params", "FLOPs", "compression", "best val acc", "ranks"], rows),
    ]


def _asha(report: Report) -> list[str]:
    asha = report.asha
    if asha.trial_epochs_full is None:
        return []
    scheduler = asha.scheduler or "?"
    return [
        "## ASHA's saving",
        "",
        f"Scheduler `{scheduler}`, max_t {asha.max_t}: {asha.trials} trials ran "
        f"{asha.trial_epochs_run} trial-epochs; every trial to max_t would have been "
        f"{asha.trial_epochs_full} ({_times(asha.saving_factor)} saving). "
        + ", ".join(f"{count} {_STATUS_TEXT[status]}" for status, count in report.counts.items())
        + ".",
    ]


def _trials(report: Report) -> list[str]:
    header = [
        "trial",
        "status",
        "ranks",
        "params",
        "FLOPs",
        "compr.",
        "best val acc",
        "epochs to target",
        "s to target",
        "epochs run",
    ]
    rows = []
    for e in report.trials:
        marks = ("◆" if e.on_pareto_params else "") + ("◇" if e.on_pareto_flops else "")
        rows.append(
            [
                f"{_short(e)}{' ' + marks if marks else ''}",
                _STATUS_TEXT[e.status],
                _plan(e),
                _int(e.params),
                _flops(e.flops),
                _times(e.compression),
                _acc(e.best_val_acc),
                _count(e.epochs_to_target),
                _seconds(e.seconds_to_target),
                _count(e.epochs_run),
            ]
        )
    return [
        "## Trials",
        "",
        "Best accuracy first; ◆ on the accuracy/params Pareto front, ◇ on the accuracy/FLOPs "
        "front; stopped early = by ASHA.",
        "",
        *_table(header, rows),
    ]


def _legend(report: Report) -> str:
    prefix = report.trials[0].trial_name.rsplit("_", 1)[0] if report.trials else "trial"
    layers = " · ".join(f"`{layer}`" for layer in report.sweep.layers) or "none"
    return (
        f"Trial NNNNN below is run `{prefix}_NNNNN`; ranks are N'×C'×D' for the layers "
        f"{layers}, in that order."
    )


def render_markdown(report: Report) -> str:
    """The whole report as Markdown; plots are referenced by their file names."""
    sweep = report.sweep
    lines = [f"# Tucker-rank report: sweep `{sweep.name}`", ""]
    if sweep.partial:
        what = {
            "running": "still running",
            "interrupted": "interrupted (resumable)",
            "failed": "failed",
        }.get(sweep.state, sweep.state)
        lines += [
            f"> **Partial report**: the sweep is {what}; figures will change as it continues.",
            "",
        ]
    counts = ", ".join(f"{n} {_STATUS_TEXT[s]}" for s, n in report.counts.items())
    lines += [
        f"{sweep.model or '?'} on {sweep.data or '?'} · {len(report.trials)} trials ({counts}) · "
        f"MLflow experiment `{sweep.experiment}`, sweep run `{sweep.run_id}` · "
        f"generated {report.generated_at}",
        "",
        _legend(report),
        "",
        "## Headline",
        "",
        *_headline(report),
        "",
    ]
    if report.plots:
        lines += ["## Plots", ""]
        for name, filename in report.plots.items():
            lines += [f"![{_PLOT_TITLES.get(name, name)}]({filename})", ""]
    for section in (_recommended_plan(report), _side_by_side(report), _convergence(report)):
        if section:
            lines += [*section, ""]
    lines += [*_front(report, report.pareto_params, "params"), ""]
    lines += [*_front(report, report.pareto_flops, "flops"), ""]
    for section in (_asha(report), _trials(report)):
        if section:
            lines += [*section, ""]
    return "\n".join(lines)


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1240px; padding: 16px 20px 40px; background: #fff; }
h1 { font-size: 1.6em; margin: 0.3em 0; }
h2 { font-size: 1.2em; margin: 1.4em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
table { border-collapse: collapse; font-size: 13px; margin: 0.4em 0; }
th, td { border: 1px solid #d8d8d8; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
code { font: 12px ui-monospace, Menlo, Consolas, monospace; background: #f4f4f4;
       padding: 0 3px; border-radius: 3px; }
pre { background: #f4f4f4; padding: 8px 10px; overflow-x: auto; }
pre code { padding: 0; }
blockquote { margin: 0.5em 0; padding: 6px 12px; background: #fff4d6;
             border-left: 4px solid #e0a800; }
img { max-width: 100%; display: block; margin: 0.4em 0 1em; }
.scroll { overflow-x: auto; }
"""


def render_html(report: Report, markdown: str, plots: dict[str, Path]) -> str:
    """One HTML file: the Markdown rendered, every plot inlined; nothing is fetched."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    for path in plots.values():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body = body.replace(f'src="{path.name}"', f'src="data:image/png;base64,{data}"')
    body = body.replace("<table>", '<div class="scroll"><table>').replace(
        "</table>", "</table></div>"
    )
    title = html.escape(f"Tucker-rank report: {report.sweep.name}")
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<style>{_CSS}</style></head>\n<body>\n{body}</body></html>\n"
    )


def report_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"


def schema_json() -> str:
    return json.dumps(report_json_schema(), indent=2) + "\n"


def terminal_view(report: Report, markdown: str, folder: Path) -> list[Any]:
    """What `tucker-sweep report` prints: the Markdown rendered by rich, except that plots
    are named by file and the trials table is a rich table that fits a narrow terminal (a
    Markdown table gives every column the same share)."""
    from rich import box
    from rich.markdown import Markdown
    from rich.table import Table

    text = markdown.split("\n## Trials\n", 1)[0]
    if report.plots:
        files = ", ".join(str(folder / name) for name in report.plots.values())
        text = re.sub(
            r"## Plots\n\n(?:!\[[^\]]*\]\([^)]*\)\n\n)+", f"## Plots\n\n{files}\n\n", text
        )
    # No padding: the box's one-character separators keep columns apart, and ten columns
    # then fit 80 characters.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=0, header_style="bold")
    for column in ("trial", "status", "ranks", "params", "FLOPs", "×", "acc", "ep→t", "s→t", "ep"):
        table.add_column(
            column,
            justify="left" if column in ("trial", "status", "ranks") else "right",
            no_wrap=column != "ranks",
        )
    terse = {"completed": "done", "stopped_early": "ASHA"}
    for e in report.trials:
        marks = ("◆" if e.on_pareto_params else "") + ("◇" if e.on_pareto_flops else "")
        table.add_row(
            f"{_short(e)}{' ' + marks if marks else ''}",
            terse.get(e.status, e.status),
            "  ".join(_ranks(r) for r in e.ranks.values()),  # one line if there is room
            _int(e.params),
            _flops(e.flops).replace(" ", ""),
            _times(e.compression).replace(".00x", "x"),
            _acc(e.best_val_acc),
            _count(e.epochs_to_target),
            _seconds(e.seconds_to_target).replace(" s", "s"),
            _count(e.epochs_run),
        )
    target = report.sweep.target_accuracy
    legend = (
        "Best accuracy first. status: done (ran to max_t), ASHA (stopped early by ASHA), "
        "failed; ◆ on the accuracy/params Pareto front, ◇ on the accuracy/FLOPs front; "
        f"× compression; acc best val acc; ep→t, s→t epochs, seconds to the target accuracy "
        f"{'' if target is None else f'{target:g} '}(– never); ep epochs run."
    )
    return [Markdown(text), Markdown(f"## Trials\n\n{legend}\n"), table]
