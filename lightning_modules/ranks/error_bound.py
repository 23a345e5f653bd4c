"""The error model of rank selection: the truncated-HOSVD bound on the relative error of a Tucker
approximation, read off the mode spectra alone (docs/design.md, "Rank allocation").

    ||W - W_hat||^2 / ||W||^2  <=  sum over modes n of the energy share left out in mode n

(De Lathauwer, De Moor & Vandewalle 2000, property 10): it holds for the truncated HOSVD, and
HOOI, which starts there and only lowers the error, stays below it too. The allocator prices
thousands of triples per layer with it; the seed scores its candidates with it. Both use these
functions, so a candidate's score and the allocator's estimate of the same triple are one number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lightning_modules.ranks.spectra import ModeSpectra


def left_out_energy(spectrum: np.ndarray, length: int) -> np.ndarray:
    """tails[r] for r = 0..length: the share of the energy sum(s_i^2) beyond the first r
    singular values (0 once r reaches the spectrum's end; 1 at r = 0)."""
    energy = np.asarray(spectrum, dtype=np.float64) ** 2
    total = energy.sum()
    tails = np.zeros(length + 1)
    if total == 0.0:
        return tails
    # Summed from the tail, so that small shares keep their precision.
    suffix = np.cumsum(energy[::-1])[::-1] / total  # suffix[i] = share of s_i, s_i+1, ...
    count = min(len(energy), length)
    tails[:count] = suffix[:count]
    return tails


def estimated_error(tails: Sequence[np.ndarray], ranks: Sequence[int]) -> float:
    """The HOSVD bound on the relative error of a Tucker approximation at `ranks`:
    ||W - W_hat||^2 <= sum over modes of the energy left out in that mode's unfolding."""
    return math.sqrt(sum(float(t[r]) for t, r in zip(tails, ranks, strict=True)))


def error_bound(spectra: ModeSpectra, ranks: Sequence[int]) -> float:
    """The bound above for one triple (N', C', D') of a kernel with these spectra: at most
    sqrt(3) times the best Tucker error at those ranks, and 0 at ranks that keep every
    nonzero singular value. Above 1 (the error never is) where a triple leaves out most of
    every mode: still an order, as the allocator compares such triples too."""
    ranks = [int(rank) for rank in ranks]
    # Tails up to the spectrum's end at least: tails[length] is 0 by construction.
    tails = [
        left_out_energy(spectrum, max(len(spectrum), rank))
        for spectrum, rank in zip(spectra.as_tuple(), ranks, strict=True)
    ]
    return estimated_error(tails, ranks)
