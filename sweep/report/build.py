"""A sweep's best-rank report as data, from its MLflow runs: the trials, the best trial and the
recommended rank plan, Pareto fronts of accuracy against parameters, FLOPs and measured
speed-up, the dense baseline side by side, convergence to the target accuracy, ASHA's saving.

    report = build_report(client, runs)      # runs: sweep.tracking.sweep_runs.load_sweep(...)
    report.best.ranks, report.recommended.trial

write.py renders it (render.py, plots.py) and logs the files on the sweep's parent run.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from sweep.errors import ReportError
from sweep.report.convergence import convergence
from sweep.report.ranking import is_finished, pareto_front, ranking_key
from sweep.report.recommend import headline, recommend
from sweep.report.schema import (
    DENSE_LABELS,
    AshaSaving,
    BaselineEntry,
    Criteria,
    Curve,
    DeployInfo,
    Report,
    SweepInfo,
    TrialEntry,
)
from sweep.tracking.convergence import convergence_metrics
from sweep.tracking.names import (
    ESTIMATED_ERROR_METRIC,
    LATENCY_PREFIX,
    SECONDS_METRIC,
    SPEEDUP_PREFIX,
    TEST_ACC_METRIC,
    TRIAL_ID_TAG,
    trial_index,
)
from sweep.tracking.redact import redact
from sweep.tracking.sweep_runs import (
    RunRecord,
    SweepRuns,
    metric_history,
    natural_key,
    trial_status,
)
from sweep.trial_params import RATIO_KEYS, TARGET_COMPRESSION_PARAM

TOP_CURVES = 5
# No budget, smaller than dense, within half a point of the dense reference, fewest parameters.
DEFAULT_CRITERIA = Criteria(max_params=None, min_compression=1.0, max_drop=0.5, minimise="params")
_SWEEP_STATES = {
    "FINISHED": "finished",
    "RUNNING": "running",
    "SCHEDULED": "running",
    "KILLED": "interrupted",
    "FAILED": "failed",
}


def _rounded(value: float | None) -> int | None:
    return None if value is None else round(value)


def _float_param(params: dict[str, str], key: str) -> float | None:
    try:
        value = float(params[key])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _by_batch(run: RunRecord, prefix: str) -> dict[str, float] | None:
    """Batch size -> the run's `<prefix><batch>` metric, by batch size; None when it has none
    (a sweep from before speed was measured, a trial that never reported)."""
    found = {
        int(key.removeprefix(prefix)): run.metric(key)
        for key in run.metrics
        if key.startswith(prefix) and key.removeprefix(prefix).isdigit()
    }
    measured = {batch: value for batch, value in sorted(found.items()) if value is not None}
    return {str(batch): value for batch, value in measured.items()} or None


def _deploy(params: dict[str, str]) -> DeployInfo | None:
    """The device the sweep timed its models on, from the parent's deploy/* params."""
    if "deploy/device" not in params:
        return None
    sizes = params.get("deploy/batch_sizes", "").split(",")
    return DeployInfo(
        device=params["deploy/device"],
        device_name=params.get("deploy/device_name"),
        threads=_rounded(_float_param(params, "deploy/threads")),
        batch_sizes=[int(size) for size in sizes if size.strip().isdigit()],
        dtype=params.get("deploy/dtype"),
    )


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
            _rounded(run.metric("epochs_to_target")),
            run.metric("seconds_to_target"),
            _rounded(run.metric("epochs_run")),
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
    run: RunRecord,
    figures: _TrialFigures,
    baseline_flops: int | None,
    fronts: tuple[set, set, set],
) -> TrialEntry:
    params, flops = _rounded(run.metric("params")), _rounded(run.metric("flops"))
    ratios = {
        key.removeprefix("ratio_"): _float_param(run.params, key)
        for key in RATIO_KEYS
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
        test_acc=run.metric(TEST_ACC_METRIC),
        epochs_to_target=figures.epochs_to_target,
        seconds_to_target=figures.seconds_to_target,
        epochs_run=figures.epochs_run,
        wall_seconds=figures.wall_seconds,
        target_compression=_float_param(run.params, TARGET_COMPRESSION_PARAM),
        estimated_error=run.metric(ESTIMATED_ERROR_METRIC),
        on_pareto_params=run.run_id in fronts[0],
        on_pareto_flops=run.run_id in fronts[1],
        latency_ms=_by_batch(run, LATENCY_PREFIX),
        speedup=_by_batch(run, SPEEDUP_PREFIX),
        on_pareto_speedup=run.run_id in fronts[2],
    )


def _is_finished(entry: TrialEntry) -> bool:
    return is_finished(entry.status, entry.params, entry.best_val_acc)


def _ranking(entry: TrialEntry) -> tuple:
    return ranking_key(entry.best_val_acc, entry.params, entry.trial_name)


def _asha(runs: SweepRuns, entries: list[TrialEntry]) -> AshaSaving:
    max_t = _rounded(_float_param(runs.parent.params, "max_t"))
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


def _baseline_entry(run: RunRecord | None, role: str) -> BaselineEntry | None:
    if run is None:
        return None
    return BaselineEntry(
        run_id=run.run_id,
        role=role,  # type: ignore[arg-type]
        params=_rounded(run.metric("params")),
        flops=_rounded(run.metric("flops")),
        best_val_acc=run.metric("best_val_acc"),
        test_acc=run.metric(TEST_ACC_METRIC),
        epochs_to_target=_rounded(run.metric("epochs_to_target")),
        seconds_to_target=run.metric("seconds_to_target"),
        epochs_run=_rounded(run.metric("epochs_run")),
        wall_seconds=run.metric("wall_seconds"),
        latency_ms=_by_batch(run, LATENCY_PREFIX),
    )


def _dense_rows(runs: SweepRuns) -> list[BaselineEntry]:
    """The sweep's dense rows: the trained baseline; or, from model.checkpoint, the given
    model as it is and fine-tuned with a trial's budget."""
    if runs.finetuned_baseline is None:
        rows = [_baseline_entry(runs.baseline, "trained")]
    else:
        rows = [
            _baseline_entry(runs.baseline, "given"),
            _baseline_entry(runs.finetuned_baseline, "finetuned"),
        ]
    return [row for row in rows if row is not None]


def reference_row(dense: list[BaselineEntry]) -> BaselineEntry | None:
    """The dense row the trials are measured against: the best val acc (validation selects;
    ties: the first). Against the better of the given and the fine-tuned model, a plan's
    accuracy is never credited to fine-tuning alone, nor held to a model worse than dense."""
    scored = [row for row in dense if row.best_val_acc is not None]
    if not scored:
        return dense[0] if dense else None
    return max(scored, key=lambda row: row.best_val_acc or 0.0)


def _sweep_info(runs: SweepRuns, layers: list[str]) -> SweepInfo:
    parent = runs.parent
    state = _SWEEP_STATES.get(parent.status, "running")
    return SweepInfo(
        name=runs.name,
        run_id=parent.run_id,
        experiment=runs.experiment_name,
        experiment_id=runs.experiment_id,
        tracking_uri=redact(runs.tracking_uri),  # report.json is shared: no credentials
        mlflow_status=parent.status,
        state=state,  # type: ignore[arg-type]
        partial=state != "finished",
        data=parent.params.get("data"),
        model=parent.params.get("model"),
        target_accuracy=_float_param(parent.params, "target_accuracy"),
        max_t=_rounded(_float_param(parent.params, "max_t")),
        num_samples=_rounded(_float_param(parent.params, "num_samples")),
        layers=layers,
        params=dict(sorted(parent.params.items())),
        started_ms=parent.start_time,
        ended_ms=parent.end_time if state != "running" else None,
    )


def _speed_front(finished: list[TrialEntry], batch: int | None) -> list[str]:
    """Run ids on the front of val acc against measured speed-up at `batch`, fastest first:
    a higher speed-up is better, so it enters the front as a cost of minus the speed-up."""
    points = [
        (e.run_id, -(e.speedup_at(batch) or 0.0), e.best_val_acc or 0.0)
        for e in finished
        if e.speedup_at(batch) is not None
    ]
    return pareto_front(points)


def _trial_entries(
    client: MlflowClient,
    runs: SweepRuns,
    baseline_flops: int | None,
    target: float | None,
    speed_batch: int | None,
) -> list[TrialEntry]:
    """Every trial, best first, marked where it is on the Pareto fronts of the finished ones.
    ReportError when every trial failed."""
    figures = {run.run_id: _figures(client, run, target) for run in runs.trials}
    provisional = [
        _trial_entry(run, figures[run.run_id], baseline_flops, (set(), set(), set()))
        for run in runs.trials
    ]
    if all(entry.status == "failed" for entry in provisional):
        raise ReportError(
            f"every trial of sweep {runs.name!r} failed ({len(provisional)} trials): no ranks to "
            f"report; the trials' errors are in Ray's results for the sweep"
        )
    finished = [entry for entry in provisional if _is_finished(entry)]
    fronts = (
        set(pareto_front([(e.run_id, e.params, e.best_val_acc) for e in finished])),
        set(
            pareto_front(
                [(e.run_id, e.flops, e.best_val_acc) for e in finished if e.flops is not None]
            )
        ),
        set(_speed_front(finished, speed_batch)),
    )
    return sorted(
        (_trial_entry(run, figures[run.run_id], baseline_flops, fronts) for run in runs.trials),
        key=_ranking,
    )


def _front(finished: list[TrialEntry], cost: str) -> list[str]:
    """Run ids on the accuracy/`cost` front, by increasing cost."""
    on_front = [entry for entry in finished if getattr(entry, f"on_pareto_{cost}")]
    return [entry.run_id for entry in sorted(on_front, key=lambda e: getattr(e, cost))]


def _curves(
    client: MlflowClient,
    dense: list[BaselineEntry],
    finished: list[TrialEntry],
    top: int,
) -> list[Curve]:
    """The dense rows' validation curves and those of the `top` best finished trials."""
    curves = [_curve(client, row.run_id, DENSE_LABELS[row.role]) for row in dense]
    for entry in finished[:top]:
        label = f"trial {trial_index(entry.trial_name)} ({entry.compression or 0:.1f}x)"
        curves.append(_curve(client, entry.run_id, label))
    return curves


def build_report(
    client: MlflowClient,
    runs: SweepRuns,
    criteria: Criteria = DEFAULT_CRITERIA,
    top_curves: int = TOP_CURVES,
    plots: dict[str, str] | None = None,
) -> Report:
    """The report of the sweep's runs. ReportError when every trial failed."""
    target = _float_param(runs.parent.params, "target_accuracy")
    deploy = _deploy(runs.parent.params)
    speed_batch = deploy.first_batch if deploy else None
    dense = _dense_rows(runs)
    baseline = reference_row(dense)
    flops = baseline.flops if baseline else None
    entries = _trial_entries(client, runs, flops, target, speed_batch)
    finished = [entry for entry in entries if _is_finished(entry)]
    best = finished[0] if finished else None
    layers = sorted({layer for entry in entries for layer in entry.ranks}, key=natural_key)
    recommended = recommend(finished, criteria, baseline, speed_batch)
    return Report(
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        sweep=_sweep_info(runs, layers),
        baseline=baseline,
        dense=dense,
        trials=entries,
        counts=dict(sorted(Counter(entry.status for entry in entries).items())),
        best=best,
        recommended=recommended,
        pareto_params=_front(finished, "params"),
        pareto_flops=_front(finished, "flops"),
        pareto_speedup=_speed_front(finished, speed_batch),
        deploy=deploy,
        headline=headline(recommended.trial, deploy),
        convergence=convergence(finished, baseline, target, best),
        asha=_asha(runs, entries),
        curves=_curves(client, dense, finished, top_curves),
        plots=plots or {},
    )
