"""Energy ranks: per mode, the smallest rank that keeps a given share of the spectrum's energy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
        raise ValueError(f"energy threshold must be a number in (0, 1], got {threshold!r}")
    value = float(threshold)
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise ValueError(f"energy threshold must be in (0, 1], got {threshold!r}")
    return value


def energy_rank(spectrum: np.ndarray, threshold: float) -> int:
    """Smallest r with sum(s_i^2, i <= r) >= threshold * sum(s_i^2).

    Values at round-off level (below s_max * len * eps, numpy's matrix_rank rule) count as zero,
    and the cumulative sum may fall short of the threshold by round-off, so threshold 1.0 gives
    the number of nonzero values. An all-zero spectrum gives 1 (a rank is at least 1).
    """
    value = check_threshold(threshold)
    values = np.asarray(spectrum, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"spectrum must be a non-empty 1-D array, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("spectrum must hold finite non-negative singular values")
    values = np.sort(values)[::-1]
    energy = values**2
    total = energy.sum()
    if total == 0.0:
        return 1
    nonzero = int(np.count_nonzero(values > values[0] * values.size * np.finfo(np.float64).eps))
    cumulative = np.cumsum(energy) / total
    slack = 4 * values.size * np.finfo(np.float64).eps
    rank = int(np.searchsorted(cumulative, value - slack, side="left")) + 1
    return max(1, min(rank, nonzero))


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    if isinstance(thresholds, str | bytes) or not isinstance(thresholds, Sequence):
        raise ValueError(f"thresholds must be a sequence of numbers in (0, 1], got {thresholds!r}")
    if not thresholds:
        raise ValueError("thresholds must not be empty: give at least one energy threshold")
    return tuple(check_threshold(threshold) for threshold in thresholds)
