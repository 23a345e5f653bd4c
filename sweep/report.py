"""A sweep's best-rank report, from its MLflow runs: the trials table, the best trial and the
recommended rank plan, Pareto fronts of accuracy against parameters and FLOPs, the dense
baseline side by side, convergence to the target accuracy, ASHA's saving, and plots.

    outcome = write_sweep_report("sqlite:///mlflow.db", sweep="digits")
    outcome.report.best.ranks, outcome.files["html"]

`write_sweep_report` writes report.md, report.json (schema: sweep.report_schema), a
self-contained report.html and the PNG plots to a folder, and logs them under `report/` on the
sweep's parent run, where the MLflow UI and its REST API serve them.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mlflow.tracking import MlflowClient

from sweep.report_data import (
    ReportError,
    RunRecord,
    SweepRuns,
    load_sweep,
    metric_history,
    natural_key,
    trial_status,
)
from sweep.report_schema import (
    AshaSaving,
    BaselineEntry,
    Convergence,
    Criteria,
    Curve,
    Recommendation,
    Report,
    SweepInfo,
    TrialEntry,
)
from sweep.run_tags import SECONDS_METRIC, TRIAL_ID_TAG
from sweep.tracking import convergence_metrics

__all__ = [
    "REPORT_ARTIFACT_PATH",
    "ReportError",
    "ReportOutcome",
    "build_report",
    "pareto_front",
    "write_sweep_report",
]

DEFAULT_EXPERIMENT = "tucker-sweep"
REPORT_ARTIFACT_PATH = "report"  # folder of the report's files on the sweep's parent run
TOP_CURVES = 5
FINISHED_STATUSES = ("completed", "stopped_early")
RATIO_PARAMS = ("ratio_out", "ratio_in", "ratio_spatial")
_SWEEP_STATES = {
    "FINISHED": "finished",
    "RUNNING": "running",
    "SCHEDULED": "running",
    "KILLED": "interrupted",
    "FAILED": "failed",
}

Key = TypeVar("Key")


def pareto_front(points: Sequence[tuple[Key, float, float]]) -> list[Key]:
    """Keys of the points (key, cost, accuracy) that no other point dominates (no more
    cost and no less accuracy, and better in one), in order of increasing cost."""
    front = [
        (cost, -accuracy, key)
        for key, cost, accuracy in points
        if not any(
            other_cost <= cost
            and other_accuracy >= accuracy
            and (other_cost < cost or other_accuracy > accuracy)
            for _, other_cost, other_accuracy in points
        )
    ]
    return [key for _, _, key in sorted(front, key=lambda item: item[:2])]


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)


def _float_param(params: dict[str, str], key: str) -> float | None:
    try:
        value = float(params[key])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class _TrialFigures:
    """A trial's metrics: the final ones the sweep logged, or, for a trial still running (or
    cut off), what its per-epoch history says so far."""

    best_val_acc: float | None
    epochs_to_target: int | None
    seconds_to_target: float | None
    epochs_run: int | None
    wall_seconds: float | None


def _figures(client: MlflowClient, run: RunRecord, target: float | None) -> _TrialFigures:
    if "best_val_acc" in run.metrics or "epochs_run" in run.metrics:
        return _TrialFigures(
            run.metric("best_val_acc"),
            _int(run.metric("epochs_to_target")),
            run.metric("seconds_to_target"),
            _int(run.metric("epochs_run")),
            run.metric("wall_seconds"),
        )
    accuracy = metric_history(client, run.run_id, "val_acc")
    if not accuracy:
        return _TrialFigures(None, None, None, 0, None)
    seconds = dict(metric_history(client, run.run_id, SECONDS_METRIC))
    epochs = {step: (value, seconds.get(step, math.nan)) for step, value in accuracy}
    reached = convergence_metrics(epochs, target if target is not None else math.inf)
    last = max(epochs)
    return _TrialFigures(
        reached["best_val_acc"],
        None if math.isnan(reached["epochs_to_target"]) else int(reached["epochs_to_target"]),
        None if math.isnan(reached["seconds_to_target"]) else reached["seconds_to_target"],
        last,
        seconds.get(last),
    )


def _trial_entry(
    run: RunRecord, figures: _TrialFigures, baseline_flops: int | None, fronts: tuple[set, set]
) -> TrialEntry:
    params, flops = _int(run.metric("params")), _int(run.metric("flops"))
    ratios = {
        key.removeprefix("ratio_"): _float_param(run.params, key)
        for key in RATIO_PARAMS
        if key in run.params
    }
    return TrialEntry(
        run_id=run.run_id,
        trial_id=run.tags.get(TRIAL_ID_TAG),
        trial_name=run.trial_name,
        status=trial_status(run),  # type: ignore[arg-type]
        ranks=run.ranks,
        lr=_float_param(run.params, "lr"),
        init=run.params.get("init"),
        ratios={k: v for k, v in ratios.items() if v is not None} or None,
        params=params,
        flops=flops,
        compression=run.metric("compression"),
        flops_reduction=baseline_flops / flops if baseline_flops and flops else None,
        best_val_acc=figures.best_val_acc,
        epochs_to_target=figures.epochs_to_target,
        seconds_to_target=figures.seconds_to_target,
        epochs_run=figures.epochs_run,
        wall_seconds=figures.wall_seconds,
        on_pareto_params=run.run_id in fronts[0],
        on_pareto_flops=run.run_id in fronts[1],
    )


def _is_finished(entry: TrialEntry) -> bool:
    return (
        entry.status in FINISHED_STATUSES
        and entry.params is not None
        and entry.best_val_acc is not None
    )


def _ranking(entry: TrialEntry) -> tuple:
    """Best first: higher accuracy, then fewer parameters, then the trial's name."""
    accuracy = entry.best_val_acc if entry.best_val_acc is not None else -math.inf
    params = entry.params if entry.params is not None else math.inf
    return (-accuracy, params, natural_key(entry.trial_name))


def _recommend(
    finished: list[TrialEntry], criteria: Criteria, baseline: BaselineEntry | None
) -> Recommendation:
    budget = math.inf if criteria.max_params is None else criteria.max_params
    eligible = [
        entry
        for entry in finished
        if (entry.params or 0) <= budget and (entry.compression or 0.0) >= criteria.min_compression
    ]
    wanted = [f"compression >= {criteria.min_compression:g}x"]
    if criteria.max_params is not None:
        wanted.insert(0, f"params <= {criteria.max_params:,}")
    wanted_text = " and ".join(wanted)
    if not eligible:
        return Recommendation(
            criteria=criteria,
            trial=None,
            eligible_trials=0,
            accuracy_delta=None,
            note=f"no finished trial has {wanted_text}",
        )
    choice = min(eligible, key=_ranking)
    delta = None
    if baseline is not None and baseline.best_val_acc is not None:
        delta = choice.best_val_acc - baseline.best_val_acc  # type: ignore[operator]
    return Recommendation(
        criteria=criteria,
        trial=choice,
        eligible_trials=len(eligible),
        accuracy_delta=delta,
        note=f"best accuracy among the {len(eligible)} finished trials with {wanted_text}",
    )


def _convergence(
    finished: list[TrialEntry],
    baseline: BaselineEntry | None,
    target: float | None,
    best: TrialEntry | None,
) -> Convergence:
    reached = [entry for entry in finished if entry.epochs_to_target is not None]
    epochs = [entry.epochs_to_target for entry in reached]
    seconds = [entry.seconds_to_target for entry in reached if entry.seconds_to_target is not None]
    median_epochs = statistics.median(epochs) if epochs else None
    median_seconds = statistics.median(seconds) if seconds else None
    base_epochs = baseline.epochs_to_target if baseline else None
    base_seconds = baseline.seconds_to_target if baseline else None
    faster = same = slower = 0
    if base_epochs is not None:
        faster = sum(e < base_epochs for e in epochs)  # type: ignore[operator]
        same = sum(e == base_epochs for e in epochs)
        slower = sum(e > base_epochs for e in epochs)  # type: ignore[operator]
    if base_epochs is None or median_epochs is None:
        verdict = "undetermined"
    elif median_epochs < base_epochs:
        verdict = "faster"
    elif median_epochs > base_epochs:
        verdict = "slower"
    else:
        verdict = "same"
    summary = _convergence_summary(
        target,
        baseline,
        base_epochs,
        base_seconds,
        len(finished),
        epochs,
        median_epochs,
        median_seconds,
        (faster, same, slower),
        verdict,
    )
    return Convergence(
        target_accuracy=target,
        baseline_epochs_to_target=base_epochs,
        baseline_seconds_to_target=base_seconds,
        trials_considered=len(finished),
        trials_reached=len(reached),
        median_epochs_to_target=median_epochs,
        median_seconds_to_target=median_seconds,
        trials_faster=faster,
        trials_same=same,
        trials_slower=slower,
        trials_not_reached=len(finished) - len(reached),
        best_trial_epochs_to_target=best.epochs_to_target if best else None,
        verdict=verdict,  # type: ignore[arg-type]
        summary=summary,
    )


def _epochs_text(epochs: float | None, seconds: float | None) -> str:
    if epochs is None:
        return "never"
    text = f"{epochs:g} epoch{'' if epochs == 1 else 's'}"
    return text + (f" ({seconds:.1f} s)" if seconds is not None else "")


def _convergence_summary(
    target: float | None,
    baseline: BaselineEntry | None,
    base_epochs: int | None,
    base_seconds: float | None,
    considered: int,
    epochs: list,
    median_epochs: float | None,
    median_seconds: float | None,
    counts: tuple[int, int, int],
    verdict: str,
) -> str:
    if target is None:
        return "the sweep recorded no target accuracy"
    parts = [f"Target val acc {target:g}:"]
    if baseline is None:
        parts.append("no dense baseline was trained in this sweep;")
    else:
        parts.append(f"dense baseline {_epochs_text(base_epochs, base_seconds)};")
    parts.append(f"{len(epochs)} of {considered} finished Tucker trials reached it")
    if median_epochs is not None:
        parts[-1] += f", median {_epochs_text(median_epochs, median_seconds)}"
    if base_epochs is not None and epochs:
        faster, same, slower = counts
        parts[-1] += f" ({faster} faster, {same} as fast, {slower} slower than the baseline)"
    parts[-1] += "."
    answer = {
        "faster": "Small ranks converged faster than dense here.",
        "slower": "Small ranks converged more slowly than dense here.",
        "same": "Small ranks converged as fast as dense here.",
        "undetermined": "Not enough runs reached the target to compare.",
    }[verdict]
    parts.append(answer)
    if considered > len(epochs):
        parts.append("Trials that ASHA stopped before the target count as not reached.")
    return " ".join(parts)


def _asha(runs: SweepRuns, entries: list[TrialEntry]) -> AshaSaving:
    max_t = _int(_float_param(runs.parent.params, "max_t"))
    run = sum(entry.epochs_run or 0 for entry in entries)
    full = None if max_t is None else max_t * len(entries)
    return AshaSaving(
        scheduler=runs.parent.params.get("scheduler"),
        max_t=max_t,
        trials=len(entries),
        trial_epochs_run=run,
        trial_epochs_full=full,
        saving_factor=full / run if full is not None and run else None,
        fraction_saved=1.0 - run / full if full else None,
    )


def _curve(client: MlflowClient, run_id: str, label: str) -> Curve:
    history = metric_history(client, run_id, "val_acc")
    return Curve(
        run_id=run_id,
        label=label,
        epochs=[step for step, _ in history],
        val_acc=[value for _, value in history],
    )


def short_name(entry: TrialEntry) -> str:
    """'00004' for run_trial_65e79_00004: the index Tune gives a trial within the sweep."""
    return entry.trial_name.rsplit("_", 1)[-1]


def _baseline_entry(run: RunRecord | None) -> BaselineEntry | None:
    if run is None:
        return None
    return BaselineEntry(
        run_id=run.run_id,
        params=_int(run.metric("params")),
        flops=_int(run.metric("flops")),
        best_val_acc=run.metric("best_val_acc"),
        epochs_to_target=_int(run.metric("epochs_to_target")),
        seconds_to_target=run.metric("seconds_to_target"),
        epochs_run=_int(run.metric("epochs_run")),
        wall_seconds=run.metric("wall_seconds"),
    )


def _sweep_info(runs: SweepRuns, layers: list[str]) -> SweepInfo:
    parent = runs.parent
    state = _SWEEP_STATES.get(parent.status, "running")
    return SweepInfo(
        name=runs.name,
        run_id=parent.run_id,
        experiment=runs.experiment_name,
        experiment_id=runs.experiment_id,
        tracking_uri=runs.tracking_uri,
        mlflow_status=parent.status,
        state=state,  # type: ignore[arg-type]
        partial=state != "finished",
        data=parent.params.get("data"),
        model=parent.params.get("model"),
        target_accuracy=_float_param(parent.params, "target_accuracy"),
        max_t=_int(_float_param(parent.params, "max_t")),
        num_samples=_int(_float_param(parent.params, "num_samples")),
        layers=layers,
        params=dict(sorted(parent.params.items())),
        started_ms=parent.start_time,
        ended_ms=parent.end_time if state != "running" else None,
    )


def build_report(
    client: MlflowClient,
    runs: SweepRuns,
    max_params: int | None = None,
    min_compression: float = 1.0,
    top_curves: int = TOP_CURVES,
    plots: dict[str, str] | None = None,
) -> Report:
    """The report of the sweep's runs. ReportError when every trial failed."""
    target = _float_param(runs.parent.params, "target_accuracy")
    baseline = _baseline_entry(runs.baseline)
    baseline_flops = baseline.flops if baseline else None
    figures = {run.run_id: _figures(client, run, target) for run in runs.trials}
    provisional = [
        _trial_entry(run, figures[run.run_id], baseline_flops, (set(), set()))
        for run in runs.trials
    ]
    finished = [entry for entry in provisional if _is_finished(entry)]
    statuses = Counter(entry.status for entry in provisional)
    if statuses["failed"] == len(provisional):
        raise ReportError(
            f"every trial of sweep {runs.name!r} failed ({len(provisional)} trials): no ranks to "
            f"report; the trials' errors are in Ray's results for the sweep"
        )
    fronts = (
        set(pareto_front([(e.run_id, e.params, e.best_val_acc) for e in finished])),
        set(
            pareto_front(
                [(e.run_id, e.flops, e.best_val_acc) for e in finished if e.flops is not None]
            )
        ),
    )
    entries = sorted(
        (_trial_entry(run, figures[run.run_id], baseline_flops, fronts) for run in runs.trials),
        key=_ranking,
    )
    finished = [entry for entry in entries if _is_finished(entry)]
    best = finished[0] if finished else None

    def front(which: int, cost: str) -> list[str]:
        chosen = [entry for entry in finished if entry.run_id in fronts[which]]
        return [entry.run_id for entry in sorted(chosen, key=lambda e: getattr(e, cost))]

    curves = []
    if runs.baseline is not None:
        curves.append(_curve(client, runs.baseline.run_id, "dense baseline"))
    for entry in finished[:top_curves]:
        label = f"trial {short_name(entry)} ({entry.compression or 0:.1f}x)"
        curves.append(_curve(client, entry.run_id, label))
    layers = sorted({layer for entry in entries for layer in entry.ranks}, key=natural_key)
    return Report(
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        sweep=_sweep_info(runs, layers),
        baseline=baseline,
        trials=entries,
        counts=dict(sorted(statuses.items())),
        best=best,
        recommended=_recommend(
            finished, Criteria(max_params=max_params, min_compression=min_compression), baseline
        ),
        pareto_params=front(0, "params"),
        pareto_flops=front(1, "flops"),
        convergence=_convergence(finished, baseline, target, best),
        asha=_asha(runs, entries),
        curves=curves,
        plots=plots or {},
    )


@dataclass(frozen=True)
class ReportOutcome:
    """What `write_sweep_report` produced."""

    report: Report
    markdown: str
    out_dir: Path
    files: dict[str, Path]  # md, json, html, schema and one per plot
    artifact_uri: str | None  # where the files were logged on the parent run (None: not logged)

    @property
    def partial(self) -> bool:
        return self.report.sweep.partial


def write_sweep_report(
    tracking_uri: str,
    sweep: str | None = None,
    experiment: str | None = None,
    out_dir: Path | None = None,
    *,
    max_params: int | None = None,
    min_compression: float = 1.0,
    log_artifacts: bool = True,
) -> ReportOutcome:
    """Read the sweep (the latest in the experiment when `sweep` is None) from MLflow, write
    report.md, report.json, report.schema.json, report.html and the plots to `out_dir`
    (default reports/<sweep>), and log them under report/ on the sweep's parent run.

    Raises ReportError (unknown experiment or sweep, no trials, every trial failed) or
    TrackingError (store unreachable), both one-line user errors.
    """
    from sweep.report_plots import render_plots  # matplotlib: once the runs are read
    from sweep.report_render import render_html, render_markdown, report_json, schema_json

    client, runs = load_sweep(tracking_uri, sweep, experiment or DEFAULT_EXPERIMENT)
    folder = Path(out_dir) if out_dir is not None else Path("reports") / runs.name
    folder.mkdir(parents=True, exist_ok=True)
    report = build_report(client, runs, max_params, min_compression)
    plot_files = render_plots(report, folder)
    report = report.model_copy(update={"plots": {k: p.name for k, p in plot_files.items()}})
    markdown = render_markdown(report)
    files = {
        "md": folder / "report.md",
        "json": folder / "report.json",
        "schema": folder / "report.schema.json",
        "html": folder / "report.html",
    }
    files["md"].write_text(markdown)
    files["json"].write_text(report_json(report))
    files["schema"].write_text(schema_json())
    files["html"].write_text(render_html(report, markdown, plot_files))
    files.update(plot_files)
    artifact_uri = None
    if log_artifacts:
        artifact_uri = _log_report(client, runs.parent, files)
    return ReportOutcome(report, markdown, folder, files, artifact_uri)


def _log_report(client: MlflowClient, parent: RunRecord, files: dict[str, Path]) -> str:
    from mlflow.exceptions import MlflowException

    from sweep.errors import TrackingError

    try:
        for path in files.values():
            client.log_artifact(parent.run_id, str(path), artifact_path=REPORT_ARTIFACT_PATH)
    except (MlflowException, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TrackingError(
            f"could not log the report on the sweep's run {parent.run_id}: {first_line}"
        ) from None
    return f"{parent.artifact_uri.rstrip('/')}/{REPORT_ARTIFACT_PATH}"
