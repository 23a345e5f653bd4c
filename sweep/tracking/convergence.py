"""The figures a run ends with, from its per-epoch accuracy: the same rule for the dense baseline
and every trial, so that the report compares like with like."""

from __future__ import annotations

import math
from collections.abc import Mapping

# epoch -> (val_acc, seconds since the run started)
EpochHistory = Mapping[int, tuple[float, float]]


def convergence_metrics(epochs: EpochHistory, target_accuracy: float) -> dict[str, float]:
    """best_val_acc, epochs_to_target, seconds_to_target (NaN when never reached)."""
    best = max((acc for acc, _ in epochs.values()), default=float("nan"))
    reached = [(epoch, seconds) for epoch, (acc, seconds) in sorted(epochs.items())
               if acc >= target_accuracy]  # fmt: skip
    epoch, seconds = reached[0] if reached else (math.nan, math.nan)
    return {"best_val_acc": best, "epochs_to_target": epoch, "seconds_to_target": seconds}


def final_metrics(
    epochs: EpochHistory,
    last_epoch: int,
    target_accuracy: float,
    static_metrics: Mapping[str, float],
    stopped_early: bool,
) -> dict[str, float]:
    """The static metrics (cost, ...), convergence, epochs_run, stopped_early and wall_seconds
    (the seconds at the last epoch) of a run that ended after `last_epoch`."""
    last = epochs.get(last_epoch)
    return {
        **static_metrics,
        **convergence_metrics(epochs, target_accuracy),
        "epochs_run": last_epoch,
        "stopped_early": float(stopped_early),
        "wall_seconds": last[1] if last else math.nan,
    }
