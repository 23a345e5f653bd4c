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


def conv_reconstructed(
    x: Tensor, factors: TuckerFactors, bias: Tensor | None, geometry: ConvGeometry
) -> Tensor:
    """Rebuild W, then one dense convolution."""
    kernel = reconstruct_kernel(factors, geometry.kernel_size)
    return F.conv2d(x, kernel, bias, geometry.stride, geometry.padding, geometry.dilation)


def conv_factorized(
    x: Tensor, factors: TuckerFactors, bias: Tensor | None, geometry: ConvGeometry
) -> Tensor:
    """Four cheap ops, never materialising W:

    1x1 (U_C^T): C -> C'; each of the C' maps filtered by the same D' spatial filters (columns
    of U_D): C' -> C'*D'; 1x1 (G unfolded to N' x C'D'): -> N'; 1x1 (U_N): -> N, plus bias.
    With N' = N the last two 1x1s are merged (U_N G_(1) is N x C'D', cheaper than both).
    """
    core, out_factor, in_factor, spatial_factor = factors
    out_rank, in_rank, spatial_rank = core.shape
    kh, kw = geometry.kernel_size
    mixed = _pointwise(x, in_factor.t())
    # Grouped conv, C' groups of one map each, every group with the same D' filters. Output
    # channel b*D' + k is map b filtered by spatial filter k, matching core[a, b, k]. (Folding
    # the C' maps into the batch instead measured 2-4x slower on CPU.)
    filters = spatial_factor.t().reshape(spatial_rank, 1, kh, kw).repeat(in_rank, 1, 1, 1)
    spatial = F.conv2d(
        mixed, filters, None, geometry.stride, geometry.padding, geometry.dilation, in_rank
    )
    core_unfolded = core.reshape(out_rank, in_rank * spatial_rank)
    if out_rank == out_factor.shape[0]:
        return _pointwise(spatial, out_factor @ core_unfolded, bias)
    return _pointwise(_pointwise(spatial, core_unfolded), out_factor, bias)


def conv_folded(
    x: Tensor, factors: TuckerFactors, bias: Tensor | None, geometry: ConvGeometry
) -> Tensor:
    """Tucker-2 execution: fold U_D into the core (an N' x C' x kh x kw kernel), then
    1x1 (U_C^T) -> dense conv C' -> N' -> 1x1 (U_N). A full rank on either channel mode folds
    that factor into the kernel too and drops its 1x1."""
    core, out_factor, in_factor, spatial_factor = factors
    out_channels, in_channels = out_factor.shape[0], in_factor.shape[0]
    out_rank, in_rank, _ = core.shape
    kernel = core @ spatial_factor.t()  # N' x C' x D: the spatial factor folded into the core
    fold_in = in_rank == in_channels
    fold_out = out_rank == out_channels
    if fold_in:
        kernel = torch.einsum("abs,cb->acs", kernel, in_factor)
    if fold_out:
        kernel = torch.einsum("acs,na->ncs", kernel, out_factor)
    kernel = kernel.reshape(kernel.shape[0], kernel.shape[1], *geometry.kernel_size)
    hidden = x if fold_in else _pointwise(x, in_factor.t())
    hidden = F.conv2d(
        hidden,
        kernel,
        bias if fold_out else None,
        geometry.stride,
        geometry.padding,
        geometry.dilation,
    )
    return hidden if fold_out else _pointwise(hidden, out_factor, bias)


class ConvPath(NamedTuple):
    """One way to execute a Tucker convolution, with its cost (cost.py)."""

    forward: Callable[[Tensor, TuckerFactors, Tensor | None, ConvGeometry], Tensor]
    # Multiply-adds per image, and once per forward (the kernel rebuild of `reconstructed`).
    flops_per_image: Callable[[ConvGeometry, Sequence[int], tuple[int, int]], int]
    flops_per_call: Callable[[ConvGeometry, Sequence[int]], int]


PATHS: dict[str, ConvPath] = {
    "reconstructed": ConvPath(conv_reconstructed, reconstructed_flops, reconstruction_flops),
    "factorized": ConvPath(conv_factorized, factorized_flops, no_flops_per_call),
    "folded": ConvPath(conv_folded, folded_flops, no_flops_per_call),
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
