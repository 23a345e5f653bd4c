"""The recommendation: the smallest plan that keeps the dense reference's accuracy.

Among the finished trials that meet the budget criteria (`--budget`, `--min-compression`), the
one with the fewest parameters (or FLOPs, `--minimise flops`) whose validation accuracy is
within `--max-drop` points of the dense reference's; ties go to the higher accuracy. Validation
accuracy selects; the trial's test accuracy, reported beside it, judges the choice. From
model.checkpoint the reference is the better (by val acc) of the given model as it is and the
given model fine-tuned with a trial's budget (build.reference_row).
"""

from __future__ import annotations

import math

from sweep.report.ranking import ranking_key
from sweep.report.schema import (
    DENSE_LABELS,
    BaselineEntry,
    Criteria,
    Recommendation,
    TrialEntry,
)
from sweep.tracking.names import trial_index
from sweep.tracking.sweep_runs import natural_key


def _constraints(criteria: Criteria) -> str:
    wanted = [f"compression >= {criteria.min_compression:g}x"]
    if criteria.max_params is not None:
        wanted.insert(0, f"params <= {criteria.max_params:,}")
    return " and ".join(wanted)


def _cost(entry: TrialEntry, minimise: str) -> float:
    value = entry.flops if minimise == "flops" else entry.params
    return math.inf if value is None else value


def _trials(count: int) -> str:
    return f"{count} finished trial{'' if count == 1 else 's'}"


def _reference_text(baseline: BaselineEntry, value: float) -> str:
    if baseline.role == "trained":
        return f"the dense val acc {value:.4f}"
    return (
        f"the dense val acc {value:.4f} of the {DENSE_LABELS[baseline.role]} (the better of "
        "the given model and the given model fine-tuned)"
    )


def _delta(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference


def recommend(
    finished: list[TrialEntry], criteria: Criteria, baseline: BaselineEntry | None
) -> Recommendation:
    """The recommended trial of the finished ones (best first), by the rule above."""
    budget = math.inf if criteria.max_params is None else criteria.max_params
    eligible = [
        entry
        for entry in finished
        if (entry.params or 0) <= budget and (entry.compression or 0.0) >= criteria.min_compression
    ]
    constraints = _constraints(criteria)
    empty = Recommendation(
        criteria=criteria, trial=None, eligible_trials=0, within_tolerance=None,
        accuracy_delta=None, test_accuracy_delta=None, closest=None,
        note=f"no finished trial has {constraints}",
    )  # fmt: skip
    if not eligible:
        return empty
    reference = baseline.best_val_acc if baseline else None
    if reference is None:
        choice = min(eligible, key=lambda e: ranking_key(e.best_val_acc, e.params, e.trial_name))
        return empty.model_copy(
            update={
                "trial": choice,
                "eligible_trials": len(eligible),
                "note": f"best val acc among the {_trials(len(eligible))} with {constraints} "
                "(no dense reference to compare with)",
            }
        )
    floor = reference - criteria.max_drop / 100
    within = [entry for entry in eligible if (entry.best_val_acc or 0.0) >= floor - 1e-12]
    base_test = baseline.test_acc if baseline else None
    if not within:
        closest = min(eligible, key=lambda e: ranking_key(e.best_val_acc, e.params, e.trial_name))
        gap = _delta(closest.best_val_acc, reference)
        return empty.model_copy(
            update={
                "eligible_trials": len(eligible),
                "within_tolerance": 0,
                "closest": closest,
                "note": f"no finished trial with {constraints} is within {criteria.max_drop:g} "
                f"pt of {_reference_text(baseline, reference)}; the closest is trial "
                f"{trial_index(closest.trial_name)} at {100 * (gap or 0):+.2f} pt",
            }
        )
    choice = min(
        within,
        key=lambda e: (_cost(e, criteria.minimise), -(e.best_val_acc or 0.0),
                       natural_key(e.trial_name)),
    )  # fmt: skip
    return Recommendation(
        criteria=criteria,
        trial=choice,
        eligible_trials=len(eligible),
        within_tolerance=len(within),
        accuracy_delta=_delta(choice.best_val_acc, reference),
        test_accuracy_delta=_delta(choice.test_acc, base_test),
        closest=None,
        note=f"fewest {criteria.minimise} among the {_trials(len(within))} with {constraints} "
        f"within {criteria.max_drop:g} pt of {_reference_text(baseline, reference)}",
    )
