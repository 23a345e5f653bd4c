"""Rank selection for the convs of a trained dense CNN: mode spectra, energy and VBMF rank
estimates, HOOI errors, and the per-layer candidate rank triples that seed a sweep.

The signal is in the multilinear singular values (the singular values of each mode-n unfolding
of a trained kernel), not in an SVD of HOOI factors, which are orthonormal (see DESIGN.md,
"Rank selection"). Untrained kernels have flat spectra: analyse a trained baseline.

    analyses = candidate_ranks(trained_model, thresholds=(0.9, 0.99), input_shape=(1, 8, 8))
    analyses["block2.conv1"].candidates[0].ranks      # TuckerRanks(out_rank=..., ...)
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial, reduce

import numpy as np
import torch
from scipy.optimize import brentq, minimize_scalar
from torch import nn

from lightning_modules.hooi import hooi
from lightning_modules.models import ConvLayer, conv_layers
from lightning_modules.tucker import TuckerConv2d
from lightning_modules.tucker_cost import (
    ConvGeometry,
    TuckerRanks,
    dense_flops,
    dense_param_count,
    make_feasible,
    tucker_flops,
    tucker_param_count,
)
from sweep.errors import TuckerSweepError

__all__ = [
    "METHODS",
    "Candidate",
    "LayerAnalysis",
    "ModeSpectra",
    "NoDecomposableLayersError",
    "analyse_layer",
    "candidate_ranks",
    "energy_rank",
    "hooi",
    "mode_spectra",
    "seeded_space_size",
    "vbmf_rank",
]

METHODS = ("energy", "vbmf")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch single-threaded, restoring the caller's setting. Why: the unfoldings are small
    (at most a few hundred rows), and on a 2-core machine MKL's threaded SVD of them was 5-30x
    slower than single-threaded and erratic (HOOI of one 128x128x3x3 kernel: 0.2-0.4 s with one
    thread, 1-13 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class NoDecomposableLayersError(TuckerSweepError, ValueError):
    """The model has no conv that rank selection could decompose."""


# ---- spectra -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ModeSpectra:
    """Descending singular values (float64) of the three unfoldings of an N x C x D kernel:
    mode 1 (N x C*D), mode 2 (C x N*D), mode 3 (D x N*C). Round-off-level values are 0."""

    out: np.ndarray
    in_: np.ndarray
    spatial: np.ndarray

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (self.out, self.in_, self.spatial)

    # Arrays make the generated __eq__ ambiguous; compare values instead.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModeSpectra):
            return NotImplemented
        return all(
            np.array_equal(mine, theirs)
            for mine, theirs in zip(self.as_tuple(), other.as_tuple(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]


def _as_three_way(weight: torch.Tensor) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor kernel, got {type(weight).__name__}")
    if weight.dim() not in (3, 4):
        raise ValueError(
            "expected a conv kernel N x C x kh x kw (or N x C x D), "
            f"got shape {tuple(weight.shape)}"
        )
    kernel = weight.detach().to(device="cpu", dtype=torch.float64)
    return kernel.reshape(kernel.shape[0], kernel.shape[1], -1)


def _unfoldings(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mode-1, mode-2 and mode-3 unfoldings (the column order does not change singular values)."""
    kernel = _as_three_way(weight)
    n, c, d = kernel.shape
    return (
        kernel.reshape(n, c * d),
        kernel.permute(1, 0, 2).reshape(c, n * d),
        kernel.permute(2, 0, 1).reshape(d, n * c),
    )


def _singular_values(unfolding: torch.Tensor, precision: torch.dtype) -> np.ndarray:
    """Singular values, with those below the round-off of the kernel's own precision set to 0
    (numpy's matrix_rank rule, s_max * max(shape) * eps): a float32 kernel of exact low rank
    then has exactly that many nonzero values, as a float64 one does."""
    values = torch.linalg.svdvals(unfolding).numpy().copy()
    if values.size:
        values[values <= values[0] * max(unfolding.shape) * torch.finfo(precision).eps] = 0.0
    values.setflags(write=False)  # shared by frozen dataclasses: nobody should edit it in place
    return values


def mode_spectra(weight: torch.Tensor) -> ModeSpectra:
    """Multilinear singular values of a conv kernel (N x C x kh x kw, or N x C x D), computed in
    float64; values at the round-off level of the kernel's dtype are returned as 0."""
    unfoldings = _unfoldings(weight)
    precision = weight.dtype if weight.is_floating_point() else torch.float64
    with _one_thread():
        out, in_, spatial = (_singular_values(m, precision) for m in unfoldings)
    return ModeSpectra(out=out, in_=in_, spatial=spatial)


# ---- rank estimates ----------------------------------------------------------------------------


def _check_threshold(threshold: object) -> float:
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
    value = _check_threshold(threshold)
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
    length, m = sorted(values.shape)  # the model is symmetric in transposition
    squares = np.linalg.svd(values, compute_uv=False) ** 2
    if squares[0] == 0.0:
        return 0
    alpha = length / m
    tau_bar = _evb_tau_bar(alpha)
    x_bar = (1.0 + tau_bar) * (1.0 + alpha / tau_bar)
    sigma2 = _evb_noise_variance(squares, m, alpha, x_bar)
    return int(np.count_nonzero(squares > m * sigma2 * x_bar))


# ---- candidates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One rank triple for one layer, with its cost and how well HOOI fits the trained kernel.

    `thresholds`: the energy thresholds that produced it (empty for VBMF). `params` and
    `dense_params` count the layer without bias; `compression` = dense_params / params.
    `flops`/`dense_flops`: multiply-adds per image, when the layer's input size is known.
    `note`: how the estimated ranks were changed to be feasible, if they were.
    """

    ranks: TuckerRanks
    thresholds: tuple[float, ...]
    params: int
    dense_params: int
    compression: float
    flops: int | None
    dense_flops: int | None
    hooi_error: float
    note: str | None = None


@dataclass(frozen=True)
class LayerAnalysis:
    """The spectra of one conv and its distinct candidate triples, cheapest first."""

    name: str
    shape: tuple[int, int, int, int]
    spectra: ModeSpectra
    candidates: list[Candidate] = field(default_factory=list)


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    if isinstance(thresholds, str | bytes) or not isinstance(thresholds, Sequence):
        raise ValueError(f"thresholds must be a sequence of numbers in (0, 1], got {thresholds!r}")
    if not thresholds:
        raise ValueError("thresholds must not be empty: give at least one energy threshold")
    return tuple(_check_threshold(threshold) for threshold in thresholds)


def _check_input_shape(input_shape: object) -> tuple[int, int, int]:
    if (
        not isinstance(input_shape, Sequence)
        or len(input_shape) != 3
        or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
            for v in input_shape
        )
    ):
        raise ValueError(f"input_shape must be three positive ints (C, H, W), got {input_shape!r}")
    return (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))


def _input_sizes(
    model: nn.Module, names: Sequence[str], input_shape: tuple[int, int, int]
) -> dict[str, tuple[int, int]]:
    """Input H x W of each named conv, traced through a shape-only (meta) copy of the model as
    lightning_modules.models.model_cost does, so nothing is computed."""
    sizes: dict[str, tuple[int, int]] = {}
    shadow = copy.deepcopy(model).to("meta").eval()
    for name in names:
        shadow.get_submodule(name).register_forward_hook(partial(_record_input_size, sizes, name))
    try:
        with torch.no_grad():
            shadow(torch.empty(1, *input_shape, device="meta"))
    except (RuntimeError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"input_shape {input_shape} does not fit the model: {first_line}"
        ) from None
    return sizes


def _record_input_size(
    sizes: dict[str, tuple[int, int]],
    name: str,
    _module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    _output: object,
) -> None:
    # A conv called twice (shared weights) is priced at its first input size.
    sizes.setdefault(name, (int(inputs[0].shape[-2]), int(inputs[0].shape[-1])))


def _kernel(model: nn.Module, layer: ConvLayer) -> torch.Tensor:
    """The conv's kernel. A layer that is already Tucker is analysed through its reconstructed
    kernel, as models.decompose re-decomposes it: its spectra then end at its current ranks."""
    module = model.get_submodule(layer.name)
    if isinstance(module, TuckerConv2d):
        with torch.no_grad():
            return module.reconstruct().detach()
    return module.weight.detach()


_MODE_NAMES = ("out", "in", "spatial")

# A raw (possibly infeasible) rank triple, the thresholds that produced it, and notes on it.
_RawTriple = tuple[tuple[int, int, int], tuple[float, ...], list[str]]


def _estimated_triples(
    weight: torch.Tensor, spectra: ModeSpectra, method: str, thresholds: tuple[float, ...]
) -> list[_RawTriple]:
    if method == "vbmf":
        found = [vbmf_rank(unfolding) for unfolding in _unfoldings(weight)]
        silent = [mode for mode, rank in zip(_MODE_NAMES, found, strict=True) if rank == 0]
        # A mode with no detected signal still needs rank 1 to be a layer at all; the note
        # warns that such a candidate will be far from the trained kernel.
        notes = [f"VBMF found no signal in the {', '.join(silent)} mode(s); rank 1 used"]
        raw = (max(found[0], 1), max(found[1], 1), max(found[2], 1))
        return [(raw, (), notes if silent else [])]
    triples: list[_RawTriple] = []
    for threshold in thresholds:
        out, in_, spatial = (energy_rank(s, threshold) for s in spectra.as_tuple())
        triples.append(((out, in_, spatial), (threshold,), []))
    return triples


def _merged_triples(
    raw_triples: list[_RawTriple], dims: tuple[int, int, int]
) -> dict[TuckerRanks, tuple[tuple[float, ...], list[str]]]:
    """Feasible triples (make_feasible: the smallest change) with the thresholds and notes of
    every raw triple that maps to each."""
    merged: dict[TuckerRanks, tuple[tuple[float, ...], list[str]]] = {}
    for raw, thresholds, raw_notes in raw_triples:
        ranks, note = make_feasible(raw, dims)
        known_thresholds, notes = merged.get(ranks, ((), []))
        for new_note in [*raw_notes, note]:
            if new_note is not None and new_note not in notes:
                notes = [*notes, new_note]
        merged[ranks] = (tuple(sorted({*known_thresholds, *thresholds})), notes)
    return merged


def _candidate(
    weight: torch.Tensor,
    geometry: ConvGeometry,
    ranks: TuckerRanks,
    thresholds: tuple[float, ...],
    notes: list[str],
    input_hw: tuple[int, int] | None,
) -> Candidate:
    params = tucker_param_count(geometry, ranks, bias=False)
    dense = dense_param_count(geometry, bias=False)
    return Candidate(
        ranks=ranks,
        thresholds=thresholds,
        params=params,
        dense_params=dense,
        compression=dense / params,
        flops=None if input_hw is None else tucker_flops(geometry, ranks, input_hw),
        dense_flops=None if input_hw is None else dense_flops(geometry, input_hw),
        # hooi's own stopping rule, so the error is the one a HOOI warm start will have.
        hooi_error=hooi(weight, ranks).relative_error,
        note="; ".join(notes) if notes else None,
    )


def analyse_layer(
    weight: torch.Tensor,
    geometry: ConvGeometry,
    name: str,
    method: str = "energy",
    thresholds: Sequence[float] = (0.8, 0.9, 0.95, 0.99),
    input_hw: tuple[int, int] | None = None,
) -> LayerAnalysis:
    """Spectra and candidates of one kernel (see candidate_ranks)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    checked = _check_thresholds(thresholds)
    with _one_thread():
        spectra = mode_spectra(weight)
        merged = _merged_triples(
            _estimated_triples(weight, spectra, method, checked), geometry.tensor_shape
        )
        candidates = [
            _candidate(weight, geometry, ranks, found, notes, input_hw)
            for ranks, (found, notes) in merged.items()
        ]
    candidates.sort(key=lambda candidate: (candidate.params, tuple(candidate.ranks)))
    g = geometry
    shape = (g.out_channels, g.in_channels, g.kernel_size[0], g.kernel_size[1])
    return LayerAnalysis(name=name, shape=shape, spectra=spectra, candidates=candidates)


def candidate_ranks(
    model: nn.Module,
    thresholds: Sequence[float] = (0.8, 0.9, 0.95, 0.99),
    method: str = "energy",
    input_shape: tuple[int, int, int] | None = None,
    include_input_layer: bool = False,
) -> dict[str, LayerAnalysis]:
    """Per decomposable conv (not the input conv unless asked), its mode spectra and distinct
    feasible candidate rank triples, sorted by parameters.

    `method="energy"`: per threshold, the per-mode energy ranks, made feasible (triples that
    coincide are merged, their thresholds kept). `method="vbmf"`: one triple of per-mode EVBMF
    ranks (a mode with no detected signal gets rank 1). `input_shape` (C, H, W) fills the
    multiply-adds. Tucker layers are analysed through their reconstructed kernels.
    Analyse a trained model: random weights have flat spectra and give near-full ranks.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    checked = _check_thresholds(thresholds)
    layers = [
        layer for layer in conv_layers(model) if include_input_layer or not layer.is_input_layer
    ]
    if not layers:
        hint = "" if include_input_layer else " (the input conv is skipped unless asked)"
        raise NoDecomposableLayersError(
            f"{type(model).__name__} has no conv to decompose{hint}: rank selection needs "
            "groups=1, zero-padded Conv2d layers"
        )
    sizes: dict[str, tuple[int, int]] = {}
    if input_shape is not None:
        sizes = _input_sizes(
            model, [layer.name for layer in layers], _check_input_shape(input_shape)
        )
    return {
        layer.name: analyse_layer(
            _kernel(model, layer),
            layer.geometry,
            layer.name,
            method=method,
            thresholds=checked,
            input_hw=sizes.get(layer.name),
        )
        for layer in layers
    }


def seeded_space_size(analyses: dict[str, LayerAnalysis]) -> int:
    """Number of rank plans (one candidate per layer) the analyses span."""
    return reduce(lambda size, analysis: size * len(analysis.candidates), analyses.values(), 1)
