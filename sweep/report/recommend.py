"""The recommendation: the smallest (or fastest) plan that keeps the dense reference's
accuracy, and the report's one-line headline about it.

Among the finished trials that meet the budget criteria (`--budget`, `--min-compression`), the
one with the fewest parameters (or FLOPs, `--minimise flops`; or the highest measured speed-up
at the first deployment batch size, `--minimise latency`, unmeasured trials last) whose
validation accuracy is within `--max-drop` points of the dense reference's; ties go to the
higher accuracy. Validation accuracy selects; the trial's test accuracy, reported beside it,
judges the choice. From model.checkpoint the reference is the better (by val acc) of the given
model as it is and the given model fine-tuned with a trial's budget (build.reference_row).
"""

from __future__ import annotations

import math

from sweep.report.ranking import ranking_key
from sweep.report.schema import (
    DENSE_LABELS,
    BaselineEntry,
    Criteria,
    DeployInfo,
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


def _cost(entry: TrialEntry, minimise: str, speed_batch: int | None) -> float:
    if minimise == "latency":  # the fastest first: minus the speed-up
        speedup = entry.speedup_at(speed_batch)
        return math.inf if speedup is None else -speedup
    value = entry.flops if minimise == "flops" else entry.params
    return math.inf if value is None else value


def _rule_text(minimise: str, speed_batch: int | None, within: list[TrialEntry]) -> str:
    """What the choice among the trials within tolerance was made by."""
    if minimise != "latency":
        return f"fewest {minimise}"
    if not any(entry.speedup_at(speed_batch) is not None for entry in within):
        return "no speed was measured: the best val acc"
    return f"highest measured speed-up at batch {speed_batch}"


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
    finished: list[TrialEntry],
    criteria: Criteria,
    baseline: BaselineEntry | None,
    speed_batch: int | None = None,
) -> Recommendation:
    """The recommended trial of the finished ones (best first), by the rule above;
    `speed_batch`: the deployment batch size `--minimise latency` ranks speed-ups at."""
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
        key=lambda e: (_cost(e, criteria.minimise, speed_batch), -(e.best_val_acc or 0.0),
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
        note=f"{_rule_text(criteria.minimise, speed_batch, within)} among the "
        f"{_trials(len(within))} with {constraints} within {criteria.max_drop:g} pt of "
        f"{_reference_text(baseline, reference)}",
    )


# ---- the headline -------------------------------------------------------------------------------

_DEVICE_TEXT = {"cpu": "CPU", "cuda": "GPU"}


def _fewer(ratio: float | None, what: str) -> str | None:
    """'10.4x fewer params' from dense / plan; a count, never a speed."""
    if ratio is None or ratio <= 0:
        return None
    return f"{ratio:.1f}x fewer {what}" if ratio >= 1 else f"{1 / ratio:.1f}x more {what}"


def device_text(deploy: DeployInfo) -> str:
    """'CPU AMD EPYC 7B13, 1 thread': the device speed was timed on."""
    kind = _DEVICE_TEXT.get(deploy.device, deploy.device)
    text = f"{kind} {deploy.device_name}" if deploy.device_name else kind
    if deploy.device == "cpu" and deploy.threads is not None:  # threads govern CPU timings only
        text += f", {deploy.threads} thread{'' if deploy.threads == 1 else 's'}"
    return text


def measured_on(deploy: DeployInfo, batch: int) -> str:
    """'CPU AMD EPYC 7B13, 1 thread, batch 1': where and how a speed-up was timed (the dtype
    only when it is not the usual float32)."""
    dtype = f", {deploy.dtype}" if deploy.dtype not in (None, "float32") else ""
    return f"{device_text(deploy)}, batch {batch}{dtype}"


def _speed_text(trial: TrialEntry, deploy: DeployInfo | None) -> str | None:
    batch = deploy.first_batch if deploy else None
    speedup = trial.speedup_at(batch)
    if deploy is None or batch is None or speedup is None:
        return None  # nothing measured: nothing said about speed
    where = measured_on(deploy, batch)
    ratio = f"{speedup:.1f}"
    if ratio == "1.0":  # a second decimal, so that 0.97 does not read as the dense speed
        ratio = f"{speedup:.2f}"
    if speedup >= 1:
        return f"{ratio}x faster (measured: {where})"
    return f"{ratio}x the dense speed (slower; measured: {where})"


def headline(trial: TrialEntry | None, deploy: DeployInfo | None) -> str | None:
    """The recommended plan in one line: '10.4x fewer params, 8.6x fewer FLOPs, 2.1x faster
    (measured: CPU AMD EPYC 7B13, 1 thread, batch 1)'. Parameters and FLOPs are counts; only
    a measured latency ratio is called faster or slower."""
    if trial is None:
        return None
    parts = [
        _fewer(trial.compression, "params"),
        _fewer(trial.flops_reduction, "FLOPs"),
        _speed_text(trial, deploy),
    ]
    return ", ".join(part for part in parts if part) or None
