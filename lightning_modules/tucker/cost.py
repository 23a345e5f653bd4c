"""The cost model of a Tucker convolution: parameters and multiply-adds, without building layers.

Plain arithmetic on a ConvGeometry and a rank triple, so that the sweep can price a rank plan
for thousands of candidates without touching torch. The ranks may also be numpy arrays (one
triple per element): the rank allocator prices every triple of a layer at once. The
multiply-adds of each execution path are derived in docs/design.md, "Execution paths"; the
paths themselves are in ops.py, whose registry pairs each one with its cost function here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lightning_modules.tucker.geometry import ConvGeometry


def _plain(value: Any) -> Any:
    """A Python int for a scalar result, the array itself otherwise."""
    return int(value) if np.ndim(value) == 0 else value


def dense_param_count(geometry: ConvGeometry, bias: bool = True) -> int:
    n, c, d = geometry.tensor_shape
    return n * c * d + (n if bias else 0)


def tucker_param_count(geometry: ConvGeometry, ranks: Sequence[int], bias: bool = True) -> int:
    """Core N'C'D' plus factors N*N' + C*C' + D*D' (plus bias)."""
    n, c, d = geometry.tensor_shape
    rn, rc, rd = ranks
    return _plain(rn * rc * rd + n * rn + c * rc + d * rd + (n if bias else 0))


def dense_flops(geometry: ConvGeometry, input_hw: tuple[int, int]) -> int:
    """Multiply-adds of the dense convolution for one image (bias not counted)."""
    ho, wo = geometry.output_hw(input_hw)
    n, c, d = geometry.tensor_shape
    return n * c * d * ho * wo


def reconstruction_flops(geometry: ConvGeometry, ranks: Sequence[int]) -> int:
    """Multiply-adds to rebuild the kernel as ops.reconstruct_kernel does (U_N G_(1), then U_D,
    then U_C): once per forward, not per image."""
    n, c, d = geometry.tensor_shape
    rn, rc, rd = ranks
    return n * rn * rc * rd + n * rc * rd * d + n * c * rc * d


def no_flops_per_call(_geometry: ConvGeometry, _ranks: Sequence[int]) -> int:
    """The per-forward cost of a path that builds nothing once per call."""
    return 0


def reconstructed_flops(
    geometry: ConvGeometry, _ranks: Sequence[int], input_hw: tuple[int, int]
) -> int:
    """Per image, the dense conv on the rebuilt kernel (see reconstruction_flops for the
    rebuild itself, paid once per forward)."""
    return dense_flops(geometry, input_hw)


def factorized_flops(
    geometry: ConvGeometry, ranks: Sequence[int], input_hw: tuple[int, int]
) -> int:
    """Per image: 1x1 C -> C' at input resolution, the grouped spatial conv, then the core
    and U_N (merged into one 1x1 when N' = N, as the layer does)."""
    n, c, d = geometry.tensor_shape
    rn, rc, rd = ranks
    h, w = input_hw
    ho, wo = geometry.output_hw(input_hw)
    out_pixels = ho * wo
    head = c * rc * h * w
    spatial = rc * rd * d * out_pixels
    tail = np.where(rn == n, rc * rd * n, rc * rd * rn + rn * n) * out_pixels
    return _plain(head + spatial + tail)


def folded_flops(geometry: ConvGeometry, ranks: Sequence[int], input_hw: tuple[int, int]) -> int:
    """Per image: U_D folded into the core gives a dense C' -> N' conv between two 1x1s; a full
    channel rank (C' = C or N' = N) folds that factor into the kernel and drops its 1x1."""
    n, c, d = geometry.tensor_shape
    rn, rc, _ = ranks
    h, w = input_hw
    ho, wo = geometry.output_hw(input_hw)
    out_pixels = ho * wo
    # kernel_in = rc and kernel_out = rn hold in both cases (C' = C folds U_C into the kernel).
    head = np.where(rc == c, 0, c * rc * h * w)
    tail = np.where(rn == n, 0, rn * n * out_pixels)
    return _plain(head + rn * rc * d * out_pixels + tail)


def tucker_flops(geometry: ConvGeometry, ranks: Sequence[int], input_hw: tuple[int, int]) -> int:
    """Multiply-adds per image of the cheaper never-materialising path (factorized or folded):
    the cost a Tucker layer has to pay, used for compression figures."""
    factorized = factorized_flops(geometry, ranks, input_hw)
    return _plain(np.minimum(factorized, folded_flops(geometry, ranks, input_hw)))
