"""The cost model of a Tucker convolution: parameters and multiply-adds, without building layers.

Plain arithmetic on a ConvGeometry and a rank triple, so that the sweep can price a rank plan
for thousands of candidates without touching torch. The multiply-adds of each execution path
are derived in docs/design.md, "Execution paths"; the paths themselves are in ops.py, whose
registry pairs each one with its cost function here.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_modules.tucker.geometry import ConvGeometry


def dense_param_count(geometry: ConvGeometry, bias: bool = True) -> int:
    n, c, d = geometry.tensor_shape
    return n * c * d + (n if bias else 0)


def tucker_param_count(geometry: ConvGeometry, ranks: Sequence[int], bias: bool = True) -> int:
    """Core N'C'D' plus factors N*N' + C*C' + D*D' (plus bias)."""
    n, c, d = geometry.tensor_shape
    rn, rc, rd = ranks
    return rn * rc * rd + n * rn + c * rc + d * rd + (n if bias else 0)


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
    tail = rc * rd * n * out_pixels if rn == n else (rc * rd * rn + rn * n) * out_pixels
    return head + spatial + tail


def folded_flops(geometry: ConvGeometry, ranks: Sequence[int], input_hw: tuple[int, int]) -> int:
    """Per image: U_D folded into the core gives a dense C' -> N' conv between two 1x1s; a full
    channel rank (C' = C or N' = N) folds that factor into the kernel and drops its 1x1."""
    n, c, d = geometry.tensor_shape
    rn, rc, _ = ranks
    h, w = input_hw
    ho, wo = geometry.output_hw(input_hw)
    out_pixels = ho * wo
    kernel_in = c if rc == c else rc
    kernel_out = n if rn == n else rn
    head = 0 if rc == c else c * rc * h * w
    tail = 0 if rn == n else rn * n * out_pixels
    return head + kernel_out * kernel_in * d * out_pixels + tail


def tucker_flops(geometry: ConvGeometry, ranks: Sequence[int], input_hw: tuple[int, int]) -> int:
    """Multiply-adds per image of the cheaper never-materialising path (factorized or folded):
    the cost a Tucker layer has to pay, used for compression figures."""
    return min(factorized_flops(geometry, ranks, input_hw), folded_flops(geometry, ranks, input_hw))
