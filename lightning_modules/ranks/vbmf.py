"""Ranks by empirical variational Bayesian matrix factorisation (EVBMF), the second estimator
of docs/design.md, "Rank selection"."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import brentq, minimize_scalar

# EVBMF is written here from Nakajima, Sugiyama, Babacan & Tomioka (2013), "Global analytic
# solution of fully-observed variational Bayesian matrix factorization", JMLR 14, and the noise
# variance estimate of Nakajima et al. (2012), "Perfect dimensionality recovery by VBMF", NIPS:
# no maintained package provides it. Notation: V is L x M with L <= M, alpha = L / M, singular
# values gamma_h, noise variance sigma^2, x_h = gamma_h^2 / (M sigma^2). A component survives
# empirical VB iff x_h > x_bar = (1 + tau_bar)(1 + alpha / tau_bar).


def _phi(z: float) -> float:
    return math.log1p(z) / z - 0.5


def _evb_tau_bar(alpha: float) -> float:
    """tau_bar = sqrt(alpha) t, t the zero of Phi(sqrt(alpha) t) + Phi(t / sqrt(alpha)),
    Phi(z) = log(1 + z) / z - 1/2 (t = 2.5129 at alpha = 1; solved, not approximated)."""
    root = math.sqrt(alpha)
    t = brentq(lambda t: _phi(root * t) + _phi(t / root), 1e-6, 1e6, xtol=1e-12)
    return root * t


def _evb_free_energy(
    sigma2: float, squares: np.ndarray, total: float, m: int, alpha: float, x_bar: float
) -> float:
    """2F / M up to a constant, as a function of sigma^2 alone: sum_h psi0(x_h) +
    sum_{x_h > x_bar} psi1(x_h), with psi0(x) = x - log x (whose sigma-free part, -log gamma^2,
    is dropped so that zero singular values stay finite) and psi1(x) = log(tau + 1) +
    alpha log(tau / alpha + 1) - tau, tau = tau(x) solving x = (1 + tau)(1 + alpha / tau)."""
    x = squares / (m * sigma2)
    value = total / (m * sigma2) + squares.size * math.log(sigma2)
    kept = x[x > x_bar]
    if kept.size:
        shifted = kept - (1.0 + alpha)
        tau = 0.5 * (shifted + np.sqrt(np.maximum(shifted**2 - 4.0 * alpha, 0.0)))
        value += float(np.sum(np.log1p(tau) + alpha * np.log1p(tau / alpha) - tau))
    return value


def _evb_noise_variance(squares: np.ndarray, m: int, alpha: float, x_bar: float) -> float:
    """sigma^2 minimising the free energy, within the bounds of Nakajima et al. (2012): at most
    H_bar = ceil(L / (1 + alpha)) - 1 components can survive, so the rest bounds it below."""
    length = squares.size
    total = float(squares.sum())
    upper = total / (length * m)
    h_bar = min(math.ceil(length / (1.0 + alpha)) - 1, length - 1)
    tail = squares[h_bar:]
    lower = max(float(tail[0]) / (m * x_bar), float(tail.sum()) / (m * tail.size))
    lower = min(lower, upper)
    if upper - lower <= upper * 1e-12:
        return upper

    def objective(log_sigma2: float) -> float:
        return _evb_free_energy(math.exp(log_sigma2), squares, total, m, alpha, x_bar)

    # The objective is not convex (each x_h crossing x_bar adds a kink), so a coarse grid finds
    # the basin and a bounded Brent search refines it.
    grid = np.linspace(math.log(lower), math.log(upper), 256)
    values = [objective(point) for point in grid]
    best = int(np.argmin(values))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    refined = minimize_scalar(objective, bounds=(left, right), method="bounded")
    if refined.fun <= values[best]:
        return math.exp(float(refined.x))
    return math.exp(float(grid[best]))


def vbmf_rank(matrix: np.ndarray | torch.Tensor) -> int:
    """Rank estimated by empirical variational Bayesian matrix factorisation (noise variance
    unknown, estimated by minimising the free energy): 0 when the matrix looks like pure noise."""
    if isinstance(matrix, torch.Tensor):
        values = matrix.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or min(values.shape) == 0:
        raise ValueError(f"vbmf_rank expects a non-empty 2-D matrix, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("vbmf_rank expects a finite matrix")
    singular_values = np.linalg.svd(values, compute_uv=False)
    return vbmf_rank_of_singular_values(singular_values, (values.shape[0], values.shape[1]))


def vbmf_rank_of_singular_values(singular_values: np.ndarray, shape: tuple[int, int]) -> int:
    """vbmf_rank of a matrix of `shape` from its singular values alone, which is all the model
    reads: a kernel's mode spectra give the ranks of its unfoldings without another SVD."""
    length, m = sorted(shape)  # the model is symmetric in transposition
    values = np.sort(np.asarray(singular_values, dtype=np.float64))[::-1]
    if values.shape != (length,):
        raise ValueError(
            f"a {shape[0]} x {shape[1]} matrix has {length} singular values, got {values.shape}"
        )
    squares = values**2
    if squares[0] == 0.0:
        return 0
    alpha = length / m
    tau_bar = _evb_tau_bar(alpha)
    x_bar = (1.0 + tau_bar) * (1.0 + alpha / tau_bar)
    sigma2 = _evb_noise_variance(squares, m, alpha, x_bar)
    return int(np.count_nonzero(squares > m * sigma2 * x_bar))
