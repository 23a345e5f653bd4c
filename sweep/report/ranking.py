"""Which trials count and in what order: finished trials, best first, and the Pareto front.
One rule for the report and for export's choice of the best trial."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from sweep.tracking.sweep_runs import RunRecord, SweepRuns, natural_key, trial_status

# Trials that ran as far as the sweep let them: to max_t, or until ASHA stopped them.
FINISHED_STATUSES = ("completed", "stopped_early")

Key = TypeVar("Key")


def ranking_key(best_val_acc: float | None, params: float | None, trial_name: str) -> tuple:
    """Best first: higher accuracy, then fewer parameters, then the trial's name."""
    accuracy = best_val_acc if best_val_acc is not None else -math.inf
    cost = params if params is not None else math.inf
    return (-accuracy, cost, natural_key(trial_name))


def is_finished(status: str, params: float | None, best_val_acc: float | None) -> bool:
    """A trial that finished and has the figures to be compared."""
    return status in FINISHED_STATUSES and params is not None and best_val_acc is not None


def best_trial(runs: SweepRuns) -> RunRecord | None:
    """The best finished trial of a sweep, read from its runs' final metrics (the report's
    `best`, without building the report)."""

    finished = [
        run
        for run in runs.trials
        if is_finished(trial_status(run), run.metric("params"), run.metric("best_val_acc"))
    ]
    if not finished:
        return None
    return min(
        finished,
        key=lambda run: ranking_key(
            run.metric("best_val_acc"), round(run.metric("params") or 0), run.trial_name
        ),
    )


def front_trials(runs: SweepRuns) -> list[RunRecord]:
    """The finished trials on the accuracy/parameters or the accuracy/FLOPs Pareto front, by
    validation accuracy."""
    finished = [
        run
        for run in runs.trials
        if is_finished(trial_status(run), run.metric("params"), run.metric("best_val_acc"))
    ]
    on_front: set[str] = set()
    for cost in ("params", "flops"):
        points = [
            (run.run_id, run.metric(cost), run.metric("best_val_acc"))
            for run in finished
            if run.metric(cost) is not None
        ]
        on_front.update(pareto_front(points))  # type: ignore[arg-type]
    return [run for run in finished if run.run_id in on_front]


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
