"""Do small ranks converge faster? Epochs and seconds to the target accuracy, the Tucker trials
against the dense baseline, as figures and as one paragraph."""

from __future__ import annotations

import statistics

from sweep.report.schema import BaselineEntry, Convergence, TrialEntry

_ANSWERS = {
    "faster": "Small ranks converged faster than dense here.",
    "slower": "Small ranks converged more slowly than dense here.",
    "same": "Small ranks converged as fast as dense here.",
    "undetermined": "Not enough runs reached the target to compare.",
}


def _verdict(median_epochs: float | None, base_epochs: int | None) -> str:
    if base_epochs is None or median_epochs is None:
        return "undetermined"
    if median_epochs < base_epochs:
        return "faster"
    if median_epochs > base_epochs:
        return "slower"
    return "same"


def convergence(
    finished: list[TrialEntry],
    baseline: BaselineEntry | None,
    target: float | None,
    best: TrialEntry | None,
) -> Convergence:
    """The convergence figures of the finished trials against the baseline, with a summary."""
    reached = [entry for entry in finished if entry.epochs_to_target is not None]
    epochs = [entry.epochs_to_target for entry in reached]
    seconds = [entry.seconds_to_target for entry in reached if entry.seconds_to_target is not None]
    median_epochs = statistics.median(epochs) if epochs else None
    base_epochs = baseline.epochs_to_target if baseline else None
    # At the target after 0 epochs: the reference was given trained (model.checkpoint), so
    # there is no training of it to compare the trials' fine-tuning with.
    pretrained = base_epochs == 0
    if pretrained:
        base_epochs = None
    faster = same = slower = 0
    if base_epochs is not None:
        faster = sum(e < base_epochs for e in epochs)  # type: ignore[operator]
        same = sum(e == base_epochs for e in epochs)
        slower = sum(e > base_epochs for e in epochs)  # type: ignore[operator]
    figures = Convergence(
        target_accuracy=target,
        baseline_epochs_to_target=base_epochs,
        baseline_seconds_to_target=baseline.seconds_to_target if baseline else None,
        trials_considered=len(finished),
        trials_reached=len(reached),
        median_epochs_to_target=median_epochs,
        median_seconds_to_target=statistics.median(seconds) if seconds else None,
        trials_faster=faster,
        trials_same=same,
        trials_slower=slower,
        trials_not_reached=len(finished) - len(reached),
        best_trial_epochs_to_target=best.epochs_to_target if best else None,
        verdict=_verdict(median_epochs, base_epochs),  # type: ignore[arg-type]
        summary="",
    )
    text = summary(figures, baseline is not None, pretrained)
    return figures.model_copy(update={"summary": text})


def _epochs_text(epochs: float | None, seconds: float | None) -> str:
    if epochs is None:
        return "never"
    text = f"{epochs:g} epoch{'' if epochs == 1 else 's'}"
    return text + (f" ({seconds:.1f} s)" if seconds is not None else "")


def summary(figures: Convergence, has_baseline: bool, pretrained: bool = False) -> str:
    """The paragraph that answers the question with this sweep's figures."""
    if figures.target_accuracy is None:
        return "the sweep recorded no target accuracy"
    base_epochs = figures.baseline_epochs_to_target
    parts = [f"Target val acc {figures.target_accuracy:g}:"]
    if not has_baseline:
        parts.append("no dense baseline was trained in this sweep;")
    elif pretrained:
        parts.append("the dense reference was given trained (model.checkpoint), so there is no "
                     "training of it to compare with;")  # fmt: skip
    else:
        base = _epochs_text(base_epochs, figures.baseline_seconds_to_target)
        parts.append(f"dense baseline {base};")
    reached, considered = figures.trials_reached, figures.trials_considered
    parts.append(f"{reached} of {considered} finished Tucker trials reached it")
    if figures.median_epochs_to_target is not None:
        median = _epochs_text(figures.median_epochs_to_target, figures.median_seconds_to_target)
        parts[-1] += f", median {median}"
    if base_epochs is not None and reached:
        parts[-1] += (
            f" ({figures.trials_faster} faster, {figures.trials_same} as fast, "
            f"{figures.trials_slower} slower than the baseline)"
        )
    parts[-1] += "."
    if not pretrained:
        parts.append(_ANSWERS[figures.verdict])
    if considered > reached:
        parts.append("Trials that ASHA stopped before the target count as not reached.")
    return " ".join(parts)
