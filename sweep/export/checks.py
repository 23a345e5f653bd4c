"""Checking an exported model: it must score the validation accuracy its trial logged."""

from __future__ import annotations

import math

ACCURACY_TOLERANCE = 1e-6


class ExportCheckError(Exception):
    """The exported model does not reproduce the trial's logged accuracy (a failed check,
    not bad input: the CLI exits with status 1)."""


def accuracy_tolerance(trained_on_gpu: bool, val_size: int) -> tuple[float, str | None]:
    """How far a re-evaluated accuracy may be from the logged one, and a note when it is more
    than round-off: checked here on the CPU, a GPU-trained model's logits differ in the last
    bits (TF32 and other GPU kernels), which can flip a near-tie; two examples may flip."""
    if not trained_on_gpu:
        return ACCURACY_TOLERANCE, None
    tolerance = max(ACCURACY_TOLERANCE, 2 / val_size)
    note = (
        f"trained on GPUs, checked on the CPU: agreement within {tolerance:.2g} val acc "
        "(two examples) is accepted"
    )
    return tolerance, note


def check_accuracy(what: str, value: float, logged: float, tolerance: float, where: str) -> None:
    """ExportCheckError unless `value` is the logged accuracy within `tolerance`."""
    if not math.isclose(value, logged, rel_tol=0, abs_tol=tolerance):
        raise ExportCheckError(
            f"the exported {what} has val acc {value:.6f} on the rebuilt validation split, but "
            f"the trial logged {logged:.6f}; {where}"
        )
