"""Candidate rank triples for the convs of a trained dense CNN: per layer, the triples that the
energy thresholds (or VBMF) read off its mode spectra, each priced and scored by the spectra's
bound on its relative error (error_bound.py). Layers are analysed side by side on threads.

    analyses = candidate_ranks(trained_model, thresholds=(0.9, 0.99), input_shape=(1, 8, 8))
    analyses["block2.conv1"].candidates[0].ranks      # TuckerRanks(out_rank=..., ...)

Why a bound and not the HOOI error: one HOOI per candidate per layer took minutes on a
ResNet-50 (459 s for five thresholds, against 9 s for the spectra), and the bound orders
candidates as HOOI does. HOOI's error <= bound <= sqrt(3) x HOOI's; on ResNet-18 shapes with
decaying spectra, Spearman's rho per layer was 1 over the seed's candidates and 0.98 (median;
min 0.71) over random triples (benchmarks/seed_speed.py). HOOI runs once per layer where it is
needed: for the plan a trial starts from.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce

import torch
from torch import nn

from lightning_modules.nets import ConvLayer, conv_layers, input_sizes
from lightning_modules.ranks.energy import check_thresholds, energy_rank
from lightning_modules.ranks.error_bound import error_bound
from lightning_modules.ranks.spectra import ModeSpectra, mode_spectra
from lightning_modules.ranks.thread_pool import map_on_threads
from lightning_modules.ranks.vbmf import vbmf_rank_of_singular_values
from lightning_modules.tucker import ConvGeometry, TuckerConv2d, TuckerRanks, make_feasible
from lightning_modules.tucker.cost import (
    dense_flops,
    dense_param_count,
    tucker_flops,
    tucker_param_count,
)

METHODS = ("energy", "vbmf")


class NoDecomposableLayersError(ValueError):
    """The model has no conv that rank selection could decompose."""


@dataclass(frozen=True)
class Candidate:
    """One rank triple for one layer, with its cost and how far from the trained kernel it can be.

    `thresholds`: the energy thresholds that produced it (empty for VBMF). `params` and
    `dense_params` count the layer without bias; `compression` = dense_params / params.
    `flops`/`dense_flops`: multiply-adds per image, when the layer's input size is known.
    `error_bound`: the truncated-HOSVD bound on ||W - W_hat|| / ||W|| from the spectra; the
    HOOI a trial starts from fits at least that well. `note`: how the estimated ranks were
    changed to be feasible, if they were.
    """

    ranks: TuckerRanks
    thresholds: tuple[float, ...]
    params: int
    dense_params: int
    compression: float
    flops: int | None
    dense_flops: int | None
    error_bound: float
    note: str | None = None


@dataclass(frozen=True)
class LayerAnalysis:
    """The spectra of one conv and its distinct candidate triples, cheapest first."""

    name: str
    shape: tuple[int, int, int, int]
    spectra: ModeSpectra
    candidates: list[Candidate] = field(default_factory=list)


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


def _kernel(model: nn.Module, layer: ConvLayer) -> torch.Tensor:
    """The conv's kernel. A layer that is already Tucker is analysed through its reconstructed
    kernel, as nets.decompose re-decomposes it: its spectra then end at its current ranks."""
    module = model.get_submodule(layer.name)
    if isinstance(module, TuckerConv2d):
        with torch.no_grad():
            return module.reconstruct().detach()
    return module.weight.detach()


_MODE_NAMES = ("out", "in", "spatial")

# A raw (possibly infeasible) rank triple, the thresholds that produced it, and notes on it.
_RawTriple = tuple[tuple[int, int, int], tuple[float, ...], list[str]]


def _estimated_triples(
    geometry: ConvGeometry, spectra: ModeSpectra, method: str, thresholds: tuple[float, ...]
) -> list[_RawTriple]:
    if method == "vbmf":
        n, c, d = geometry.tensor_shape
        shapes = ((n, c * d), (c, n * d), (d, n * c))  # of the unfoldings
        found = [
            vbmf_rank_of_singular_values(values, shape)
            for values, shape in zip(spectra.as_tuple(), shapes, strict=True)
        ]
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
    spectra: ModeSpectra,
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
        error_bound=error_bound(spectra, ranks),
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
    checked = check_thresholds(thresholds)
    spectra = mode_spectra(weight)
    merged = _merged_triples(
        _estimated_triples(geometry, spectra, method, checked), geometry.tensor_shape
    )
    candidates = [
        _candidate(spectra, geometry, ranks, found, notes, input_hw)
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
    workers: int | None = None,
) -> dict[str, LayerAnalysis]:
    """Per decomposable conv (not the input conv unless asked), its mode spectra and distinct
    feasible candidate rank triples, sorted by parameters, each scored by its error bound.

    `method="energy"`: per threshold, the per-mode energy ranks, made feasible (triples that
    coincide are merged, their thresholds kept). `method="vbmf"`: one triple of per-mode EVBMF
    ranks (a mode with no detected signal gets rank 1). `input_shape` (C, H, W) fills the
    multiply-adds. Tucker layers are analysed through their reconstructed kernels.
    Analyse a trained model: random weights have flat spectra and give near-full ranks.
    `workers`: layers analysed at once, each on a thread with one torch thread (default: the
    caller's torch.get_num_threads(), its intra-op budget spread over layers instead).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    checked = check_thresholds(thresholds)
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
        sizes = input_sizes(model, _check_input_shape(input_shape), (nn.Conv2d, TuckerConv2d))
    kernels = {layer.name: _kernel(model, layer) for layer in layers}

    def analyse(layer: ConvLayer) -> LayerAnalysis:
        return analyse_layer(
            kernels[layer.name],
            layer.geometry,
            layer.name,
            method=method,
            thresholds=checked,
            input_hw=sizes.get(layer.name),
        )

    analyses = map_on_threads(
        analyse, layers, torch.get_num_threads() if workers is None else workers
    )
    return {analysis.name: analysis for analysis in analyses}


def seeded_space_size(analyses: dict[str, LayerAnalysis]) -> int:
    """Number of rank plans (one candidate per layer) the analyses span."""
    return reduce(lambda size, analysis: size * len(analysis.candidates), analyses.values(), 1)
