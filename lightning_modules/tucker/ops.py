"""The maths of a Tucker convolution as plain functions (no parameters, no state), and the one
registry of its execution paths.

Notation (docs/design.md, "The Tucker form"): kernel W (N x C x kh x kw), flattened W3
(N x C x D), D = kh*kw,

    W3 = G x1 U_N x2 U_C x3 U_D,   G: N' x C' x D', U_N: N x N', U_C: C x C', U_D: D x D'.

Every execution path computes conv2d(x, W) + bias; they differ only in the order of operations
(docs/design.md, "Execution paths").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.tucker.cost import (
    factorized_flops,
    folded_flops,
    no_flops_per_call,
    reconstructed_flops,
    reconstruction_flops,
)
from lightning_modules.tucker.geometry import ConvGeometry


class TuckerFactors(NamedTuple):
    """Core G (N' x C' x D') and factors U_N (N x N'), U_C (C x C'), U_D (D x D') of a kernel."""

    core: Tensor
    out_factor: Tensor
    in_factor: Tensor
    spatial_factor: Tensor

    def detached(self, requires_grad: bool = False) -> TuckerFactors:
        """Copies cut from the autograd graph (sharing storage), e.g. for timing a path."""
        return TuckerFactors(*(t.detach().requires_grad_(requires_grad) for t in self))


def reconstruct_kernel(factors: TuckerFactors, kernel_size: tuple[int, int]) -> Tensor:
    """W = G x1 U_N x2 U_C x3 U_D, reshaped to N x C x kh x kw.

    Three plain matrix products (no permutes): rebuilding runs on every forward of the
    `reconstructed` path, where einsum's reshapes and copies cost more than the arithmetic.
    """
    core, out_factor, in_factor, spatial_factor = factors
    out_rank, in_rank, spatial_rank = core.shape
    out_channels, in_channels = out_factor.shape[0], in_factor.shape[0]
    spatial_size = spatial_factor.shape[0]
    kernel = out_factor @ core.reshape(out_rank, in_rank * spatial_rank)  # N x C'D'
    kernel = kernel.reshape(out_channels * in_rank, spatial_rank) @ spatial_factor.t()  # NC' x D
    kernel = in_factor @ kernel.reshape(out_channels, in_rank, spatial_size)  # N x C x D
    return kernel.reshape(out_channels, in_channels, *kernel_size)


def _pointwise(x: Tensor, matrix: Tensor, bias: Tensor | None = None) -> Tensor:
    """1x1 convolution with an (out x in) matrix."""
    return F.conv2d(x, matrix[:, :, None, None], bias)


# Every path is split in two: `prepare` builds what depends on the weights only (a rebuilt or
# folded kernel, repeated filters), `run` applies it to an input. A layer that runs without
# autograd caches what `prepare` built until its parameters change (layer.py), and the
# inference form (lightning_modules/inference) turns it into plain modules' weights.
Prepared = tuple[Tensor, ...]


def _spatial(
    x: Tensor, kernel: Tensor, bias: Tensor | None, geometry: ConvGeometry, groups: int = 1
) -> Tensor:
    """The conv of a path that has the layer's kernel size: its stride, padding, dilation."""
    return F.conv2d(x, kernel, bias, geometry.stride, geometry.padding, geometry.dilation, groups)


def prepare_reconstructed(factors: TuckerFactors, geometry: ConvGeometry) -> Prepared:
    return (reconstruct_kernel(factors, geometry.kernel_size),)


def run_reconstructed(
    x: Tensor,
    prepared: Prepared,
    factors: TuckerFactors,
    bias: Tensor | None,
    geometry: ConvGeometry,
) -> Tensor:
    """One dense convolution with the rebuilt W."""
    (kernel,) = prepared
    return _spatial(x, kernel, bias, geometry)


def prepare_factorized(factors: TuckerFactors, geometry: ConvGeometry) -> Prepared:
    """The grouped conv's filters (the D' spatial filters, repeated for each of the C' maps)
    and the tail's 1x1 matrices: U_N G_(1) when N' = N (one 1x1 instead of two), else G_(1)
    and U_N."""
    core, out_factor, _, spatial_factor = factors
    out_rank, in_rank, spatial_rank = core.shape
    kh, kw = geometry.kernel_size
    # Output channel b*D' + k of the grouped conv is map b filtered by spatial filter k,
    # matching core[a, b, k].
    filters = spatial_factor.t().reshape(spatial_rank, 1, kh, kw).repeat(in_rank, 1, 1, 1)
    core_unfolded = core.reshape(out_rank, in_rank * spatial_rank)
    if out_rank == out_factor.shape[0]:
        return (filters, out_factor @ core_unfolded)
    return (filters, core_unfolded, out_factor)


def run_factorized(
    x: Tensor,
    prepared: Prepared,
    factors: TuckerFactors,
    bias: Tensor | None,
    geometry: ConvGeometry,
) -> Tensor:
    """Four cheap ops, never materialising W:

    1x1 (U_C^T): C -> C'; each of the C' maps filtered by the same D' spatial filters (columns
    of U_D): C' -> C'*D'; 1x1 (G unfolded to N' x C'D'): -> N'; 1x1 (U_N): -> N, plus bias.
    With N' = N the last two 1x1s are merged (U_N G_(1) is N x C'D', cheaper than both).
    """
    filters, *tail = prepared
    in_rank = factors.core.shape[1]
    mixed = _pointwise(x, factors.in_factor.t())
    # Grouped conv, C' groups of one map each. (Folding the C' maps into the batch instead
    # measured 2-4x slower on CPU.)
    spatial = _spatial(mixed, filters, None, geometry, groups=in_rank)
    if len(tail) == 1:
        return _pointwise(spatial, tail[0], bias)
    core_unfolded, out_factor = tail
    return _pointwise(_pointwise(spatial, core_unfolded), out_factor, bias)


def folds(factors: TuckerFactors) -> tuple[bool, bool]:
    """(C' = C, N' = N): a full rank on a channel mode folds that factor into the kernel of the
    folded path and drops its 1x1."""
    out_rank, in_rank, _ = factors.core.shape
    return in_rank == factors.in_factor.shape[0], out_rank == factors.out_factor.shape[0]


def prepare_folded(factors: TuckerFactors, geometry: ConvGeometry) -> Prepared:
    """U_D folded into the core: an N' x C' x kh x kw kernel (with U_C, U_N folded in too when
    their rank is full)."""
    core, out_factor, in_factor, spatial_factor = factors
    kernel = core @ spatial_factor.t()  # N' x C' x D
    fold_in, fold_out = folds(factors)
    if fold_in:
        kernel = torch.einsum("abs,cb->acs", kernel, in_factor)
    if fold_out:
        kernel = torch.einsum("acs,na->ncs", kernel, out_factor)
    return (kernel.reshape(kernel.shape[0], kernel.shape[1], *geometry.kernel_size),)


def run_folded(
    x: Tensor,
    prepared: Prepared,
    factors: TuckerFactors,
    bias: Tensor | None,
    geometry: ConvGeometry,
) -> Tensor:
    """Tucker-2 execution: 1x1 (U_C^T) -> dense conv C' -> N' -> 1x1 (U_N)."""
    (kernel,) = prepared
    fold_in, fold_out = folds(factors)
    hidden = x if fold_in else _pointwise(x, factors.in_factor.t())
    hidden = _spatial(hidden, kernel, bias if fold_out else None, geometry)
    return hidden if fold_out else _pointwise(hidden, factors.out_factor, bias)


RunPath = Callable[[Tensor, Prepared, TuckerFactors, "Tensor | None", ConvGeometry], Tensor]


class ConvPath(NamedTuple):
    """One way to execute a Tucker convolution, with its cost (cost.py)."""

    prepare: Callable[[TuckerFactors, ConvGeometry], Prepared]
    run: RunPath
    # Multiply-adds per image, and once per forward (the kernel rebuild of `reconstructed`).
    flops_per_image: Callable[[ConvGeometry, Sequence[int], tuple[int, int]], int]
    flops_per_call: Callable[[ConvGeometry, Sequence[int]], int]

    def forward(
        self, x: Tensor, factors: TuckerFactors, bias: Tensor | None, geometry: ConvGeometry
    ) -> Tensor:
        """conv2d(x, W) + bias, preparing from the factors on this very call."""
        return self.run(x, self.prepare(factors, geometry), factors, bias, geometry)


PATHS: dict[str, ConvPath] = {
    "reconstructed": ConvPath(
        prepare_reconstructed, run_reconstructed, reconstructed_flops, reconstruction_flops
    ),
    "factorized": ConvPath(prepare_factorized, run_factorized, factorized_flops, no_flops_per_call),
    "folded": ConvPath(prepare_folded, run_folded, folded_flops, no_flops_per_call),
}
IMPLEMENTATIONS: tuple[str, ...] = tuple(PATHS)


def path_flops(
    geometry: ConvGeometry, ranks: Sequence[int], input_hw: tuple[int, int], implementation: str
) -> int:
    """Multiply-adds for one image of one execution path, including the merges the layer does;
    `reconstructed` counts the dense conv only (its rebuild is `flops_per_call`)."""
    if implementation not in PATHS:
        raise ValueError(
            f"unknown implementation {implementation!r}; expected one of {IMPLEMENTATIONS}"
        )
    return PATHS[implementation].flops_per_image(geometry, ranks, input_hw)
