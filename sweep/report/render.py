"""The report as text, from Jinja templates over the report model: Markdown (report.md, and
what the terminal shows), one self-contained HTML file (that Markdown rendered, the plots as
data: URIs, inline CSS, nothing fetched) and JSON.

templates/report.md.j2 holds the report's words and layout; this module only supplies number
formats and table rows as filters.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

from sweep.report.recommend import device_text
from sweep.report.schema import (
    DENSE_LABELS,
    BaselineEntry,
    Report,
    TrialEntry,
    report_json_schema,
)
from sweep.tracking.names import trial_index

__all__ = ["render_html", "render_markdown", "report_json", "schema_json", "terminal_markdown"]

_STATUS_TEXT = {
    "completed": "completed",
    "stopped_early": "stopped early",
    "failed": "failed",
    "running": "running",
    "interrupted": "interrupted",
}
_PARTIAL_STATE = {
    "running": "still running",
    "interrupted": "interrupted (resumable)",
    "failed": "failed",
}
_PLOT_TITLES = {
    "pareto": "Pareto fronts: accuracy against parameters and FLOPs",
    "curves": "Validation curves: top trials against the dense baseline",
    "ranks": "Rank against accuracy, per layer",
    "speed": "Accuracy against measured speed-up",
}
_MISSING = "–"


# ---- number formats (Jinja filters; "–" for a missing value) ----------------------------------


def _or_dash(format_value: Callable[[Any], str]) -> Callable[[Any], str]:
    def formatted(value: Any) -> str:
        return _MISSING if value is None else format_value(value)

    return formatted


def _flops(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return str(value)


def _ranks(triple: Sequence[int]) -> str:
    return "×".join(map(str, triple))


acc = _or_dash(lambda v: f"{v:.4f}")
count = _or_dash(lambda v: f"{v:,}")
times = _or_dash(lambda v: f"{v:.2f}x")
seconds = _or_dash(lambda v: f"{v:.1f} s")
number = _or_dash(lambda v: f"{v:g}")
flops = _or_dash(_flops)
ranks = _or_dash(_ranks)
delta = _or_dash(lambda v: f"{100 * v:+.2f} pt")
latency = _or_dash(lambda v: f"{v:.3g} ms")
FORMATS = {
    "acc": acc,
    "count": count,
    "times": times,
    "seconds": seconds,
    "number": number,
    "flops": flops,
    "ranks": ranks,
    "delta": delta,
    "latency": latency,
}


def plan_text(entry: TrialEntry) -> str:
    """The ranks of every layer, in model order."""
    return " · ".join(ranks(r) for r in entry.ranks.values())


def pareto_marks(entry: TrialEntry) -> str:
    return (
        ("◆" if entry.on_pareto_params else "")
        + ("◇" if entry.on_pareto_flops else "")
        + ("▲" if entry.on_pareto_speedup else "")
    )


def _at(values: dict[str, float] | None, batch: int) -> float | None:
    return None if values is None else values.get(str(batch))


def speed_batch(report: Report) -> int | None:
    """The batch size the tables show speed-ups at; None (no speed column) when no trial has
    a measurement."""
    return report.speed_batch if report.measured_speed else None


# ---- table rows ---------------------------------------------------------------------------------


def _trial_row(entry: TrialEntry, batch: int | None) -> list[str]:
    marks = pareto_marks(entry)
    speed = [] if batch is None else [times(entry.speedup_at(batch))]
    return [
        trial_index(entry.trial_name) + (f" {marks}" if marks else ""),
        _STATUS_TEXT[entry.status],
        plan_text(entry),
        count(entry.params),
        flops(entry.flops),
        times(entry.compression),
        acc(entry.best_val_acc),
        number(entry.epochs_to_target),
        seconds(entry.seconds_to_target),
        number(entry.epochs_run),
        *speed,
    ]


def _front_row(entry: TrialEntry, batch: int | None) -> list[str]:
    speed = [] if batch is None else [times(entry.speedup_at(batch))]
    return [
        trial_index(entry.trial_name),
        count(entry.params),
        flops(entry.flops),
        times(entry.compression),
        acc(entry.best_val_acc),
        acc(entry.test_acc),
        *speed,
        plan_text(entry),
    ]


def _side_by_side(report: Report) -> dict[str, list] | None:
    """The dense rows, the best trial and (if another) the recommended one, as columns."""
    columns: list[tuple[str, BaselineEntry | TrialEntry]] = [
        (DENSE_LABELS[row.role], row) for row in report.dense
    ]
    if report.best is not None:
        columns.append((f"best trial {trial_index(report.best.trial_name)}", report.best))
    trial = report.recommended.trial
    if trial is not None and (report.best is None or trial.run_id != report.best.run_id):
        columns.append((f"recommended {trial_index(trial.trial_name)}", trial))
    if not columns:
        return None
    base_acc = report.baseline.best_val_acc if report.baseline else None
    entries = [entry for _, entry in columns]

    base_test = report.baseline.test_acc if report.baseline else None

    def versus_dense(value: float | None, reference: float | None, entry: object) -> str:
        if reference is None or value is None or entry == report.baseline:
            return _MISSING
        return delta(value - reference)

    def compression(entry: BaselineEntry | TrialEntry) -> str:
        return "1.00x" if isinstance(entry, BaselineEntry) else times(entry.compression)

    target = report.sweep.target_accuracy
    rows = [
        ["best val acc", *(acc(e.best_val_acc) for e in entries)],
        ["accuracy vs dense", *(versus_dense(e.best_val_acc, base_acc, e) for e in entries)],
        ["test acc", *(acc(e.test_acc) for e in entries)],
        ["test acc vs dense", *(versus_dense(e.test_acc, base_test, e) for e in entries)],
        ["params", *(count(e.params) for e in entries)],
        ["compression", *(compression(e) for e in entries)],
        ["FLOPs", *(flops(e.flops) for e in entries)],
        [
            f"epochs to {target:g}" if target else "epochs to target",
            *(number(e.epochs_to_target) for e in entries),
        ],
        ["seconds to target", *(seconds(e.seconds_to_target) for e in entries)],
        ["epochs run", *(number(e.epochs_run) for e in entries)],
        *_speed_rows(report, entries),
    ]
    return {"header": ["", *(name for name, _ in columns)], "rows": rows}


def _speed_rows(report: Report, entries: list[BaselineEntry | TrialEntry]) -> list[list[str]]:
    """Latency per deployment batch size, every column; a trial's measured speed-up (a dense
    row is the reference it is measured against, so has none)."""
    if report.deploy is None or not any(e.latency_ms for e in entries):
        return []
    rows = []
    for batch in report.deploy.batch_sizes:
        latencies = [latency(_at(e.latency_ms, batch)) for e in entries]
        rows.append([f"latency, batch {batch}", *latencies])
        speedups = [
            _MISSING if isinstance(e, BaselineEntry) else times(e.speedup_at(batch))
            for e in entries
        ]
        rows.append([f"measured speed-up, batch {batch}", *speedups])
    return rows


def _convergence_rows(report: Report) -> list[list[str]]:
    c = report.convergence
    best_seconds = report.best.seconds_to_target if report.best else None
    return [
        [
            "dense baseline",
            number(c.baseline_epochs_to_target),
            seconds(c.baseline_seconds_to_target),
            _MISSING,
        ],
        [
            "Tucker trials (median of those that reached it)",
            number(c.median_epochs_to_target),
            seconds(c.median_seconds_to_target),
            f"{c.trials_reached} of {c.trials_considered}",
        ],
        ["best trial", number(c.best_trial_epochs_to_target), seconds(best_seconds), _MISSING],
    ]


def _versus_baseline(entry: TrialEntry, baseline: BaselineEntry | None) -> str:
    if baseline is None or baseline.best_val_acc is None or entry.best_val_acc is None:
        return ""
    change = delta(entry.best_val_acc - baseline.best_val_acc)
    return f" ({change} vs the dense reference's {acc(baseline.best_val_acc)})"


# ---- templates ----------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("sweep.report", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(["html"]),
    )
    environment.filters.update(FORMATS)
    environment.filters.update(
        cell=lambda value: str(value).replace("|", "\\|"),
        rule=lambda _: "---",
        code=lambda text: f"`{text}`",
        counts=lambda counts: ", ".join(f"{n} {_STATUS_TEXT[s]}" for s, n in counts.items()),
        partial_state=lambda state: _PARTIAL_STATE.get(state, state),
        plot_title=lambda name: _PLOT_TITLES.get(name, name),
        layer_row=lambda item: [f"`{item[0]}`", ranks(item[1])],
        front_row=_front_row,
        trial_row=_trial_row,
        device_text=device_text,
        latency_at=lambda entry, batch: latency(_at(entry.latency_ms, batch)),
        versus_baseline=_versus_baseline,
        dense_label=lambda role: DENSE_LABELS[role],
        test_text=lambda entry: (
            "" if entry.test_acc is None else f", test acc {acc(entry.test_acc)}"
        ),
        capitalize_first=lambda text: text[:1].upper() + text[1:],
    )
    return environment


_TEMPLATES = _environment()


def _fronts(report: Report, by_id: dict[str, TrialEntry]) -> list[tuple[str, list[TrialEntry]]]:
    fronts = [
        ("parameters", [by_id[run_id] for run_id in report.pareto_params]),
        ("FLOPs", [by_id[run_id] for run_id in report.pareto_flops]),
    ]
    if report.pareto_speedup:
        title = f"measured speed-up (batch {report.speed_batch})"
        fronts.append((title, [by_id[run_id] for run_id in report.pareto_speedup]))
    return fronts


def _markdown(report: Report, **context: Any) -> str:
    by_id = {entry.run_id: entry for entry in report.trials}
    text = _TEMPLATES.get_template("report.md.j2").render(
        report=report,
        trial_prefix=report.trials[0].trial_name.rsplit("_", 1)[0] if report.trials else "trial",
        side_by_side=_side_by_side(report),
        convergence_rows=_convergence_rows(report),
        fronts=_fronts(report, by_id),
        speed_batch=speed_batch(report),
        **{"terminal": False, "plot_files": "", "plot_src": str, **context},
    )
    return text.rstrip("\n") + "\n"


def render_markdown(report: Report) -> str:
    """The whole report as Markdown; plots are referenced by their file names."""
    return _markdown(report)


def terminal_markdown(report: Report, folder: Path) -> str:
    """The report for a terminal: plots named by their files in `folder`, and no trials table
    (the CLI shows that as a table of its own that fits the terminal's width)."""
    files = ", ".join(str(folder / name) for name in report.plots.values())
    return _markdown(report, terminal=True, plot_files=files)


def render_html(report: Report, plots: dict[str, Path]) -> str:
    """One HTML file: the Markdown rendered, every plot inlined as a data: URI."""
    by_name = {path.name: path for path in plots.values()}

    def data_uri(filename: str) -> str:
        encoded = base64.b64encode(by_name[filename].read_bytes()).decode("ascii")
        return f"data:image/png;base64,{encoded}"

    markdown = _markdown(report, plot_src=data_uri)
    # html=False: text from the runs (names, notes) is escaped, never taken as markup.
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return _TEMPLATES.get_template("report.html.j2").render(report=report, body=Markup(body))


def report_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"


def schema_json() -> str:
    return json.dumps(report_json_schema(), indent=2) + "\n"
