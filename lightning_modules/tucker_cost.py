"""Tucker rank rules and the cost model of a Tucker convolution, without building layers.

A conv kernel N x C x kh x kw is treated as the 3-way tensor N x C x D (D = kh*kw) with Tucker
ranks (N', C', D'). Everything here is plain arithmetic so that the sweep can price a rank plan
(parameters, multiply-adds) for thousands of candidates without touching torch.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

IMPLEMENTATIONS = ("reconstructed", "factorized", "folded")


class InvalidRanksError(ValueError):
    """A rank triple that no Tucker decomposition of the kernel can have."""


class TuckerRanks(NamedTuple):
    """(N', C', D'): ranks of the output-channel, input-channel and flattened spatial modes."""

    out_rank: int
    in_rank: int
    spatial_rank: int


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvGeometry:
    """The shape-determining hyper-parameters of a 2-D convolution (groups=1)."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] | str = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    @classmethod
    def of(
        cls,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
    ) -> ConvGeometry:
        """Normalise nn.Conv2d-style arguments (ints or pairs, padding 'same'/'valid')."""
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be 'same', 'valid' or ints, got {padding!r}")
            if padding == "valid":
                padding = 0
        geometry = cls(
            in_channels=int(in_channels),
            out_channels=int(out_channels),
            kernel_size=_pair(kernel_size, "kernel_size"),
            stride=_pair(stride, "stride"),
            padding=padding if isinstance(padding, str) else _pair(padding, "padding"),
            dilation=_pair(dilation, "dilation"),
        )
        if geometry.padding == "same" and geometry.stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        if min(geometry.in_channels, geometry.out_channels, *geometry.kernel_size) < 1:
            raise ValueError(f"channels and kernel size must be positive: {geometry}")
        return geometry

    @property
    def spatial_size(self) -> int:
        """D = kh * kw, the size of the flattened spatial mode."""
        return self.kernel_size[0] * self.kernel_size[1]

    @property
    def tensor_shape(self) -> tuple[int, int, int]:
        """(N, C, D): the kernel as a 3-way tensor."""
        return (self.out_channels, self.in_channels, self.spatial_size)

    def describe(self) -> str:
        kh, kw = self.kernel_size
        return f"{self.out_channels}x{self.in_channels}x{kh}x{kw} conv"

    def output_hw(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        if self.padding == "same":
            return tuple(input_hw)  # type: ignore[return-value]
        out = []
        for size, k, s, p, d in zip(
            input_hw, self.kernel_size, self.stride, self.padding, self.dilation, strict=True
        ):
            out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return (out[0], out[1])


def validate_ranks(geometry: ConvGeometry, ranks: Sequence[int]) -> TuckerRanks:
    """Return `ranks` as TuckerRanks, or raise InvalidRanksError naming the violated rule.

    Rules: each rank is in 1..its dimension, and at most the product of the other two (a mode-n
    unfolding of an N' x C' x D' core has at most the product of the other ranks columns).
    """
    try:
        if len(ranks) != 3 or any(isinstance(r, bool) for r in ranks):
            raise TypeError
        triple = TuckerRanks(*(operator.index(r) for r in ranks))
    except TypeError:
        raise InvalidRanksError(
            f"{geometry.describe()}: ranks must be three integers (N', C', D'), got {ranks!r}"
        ) from None
    dims = geometry.tensor_shape
    names = ("N'", "C'", "D'")
    for name, rank, dim in zip(names, triple, dims, strict=True):
        if not 1 <= rank <= dim:
            raise InvalidRanksError(
                f"{geometry.describe()} (tensor {dims[0]}x{dims[1]}x{dims[2]}): ranks "
                f"{tuple(triple)} violate 1 <= {name} <= {dim}"
            )
    for i, name in enumerate(names):
        others = [triple[j] for j in range(3) if j != i]
        if triple[i] > others[0] * others[1]:
            other_names = [names[j] for j in range(3) if j != i]
            raise InvalidRanksError(
                f"{geometry.describe()}: ranks {tuple(triple)} violate {name} <= "
                f"{other_names[0]}*{other_names[1]} ({triple[i]} > {others[0] * others[1]})"
            )
    return triple


def make_feasible(ranks: Sequence[int], dims: Sequence[int]) -> tuple[TuckerRanks, str | None]:
    """Clamp ranks into 1..dim, then lower the one rank (at most one can) that exceeds the
    product of the other two. Lowering is the smallest change that keeps the other two ranks.

    Returns the feasible triple and a note describing the change (None when nothing changed).
    """
    clamped = [min(max(int(r), 1), int(d)) for r, d in zip(ranks, dims, strict=True)]
    for i in range(3):
        others = [clamped[j] for j in range(3) if j != i]
        if clamped[i] > others[0] * others[1]:
            clamped[i] = others[0] * others[1]
    result = TuckerRanks(*clamped)
    if tuple(result) == tuple(int(r) for r in ranks):
        return result, None
    return result, f"ranks {tuple(int(r) for r in ranks)} made feasible as {tuple(result)}"


RankSpec = float | str | Sequence[int] | Sequence[float]


def ranks_from_spec(geometry: ConvGeometry, spec: RankSpec) -> TuckerRanks:
    """Turn a rank specification into a valid triple for this layer.

    - `"full"`: the largest feasible ranks, (N, C, D) made feasible: still an exact
      decomposition, since a mode-n rank never exceeds the product of the other two
      dimensions (a 1x1 conv 32 x 16 x 1 has ranks at most (16, 16, 1));
    - a ratio in (0, 1]: each rank round(ratio * dim), at least 1, made feasible;
    - three ratios (floats in (0, 1]): one per mode, likewise;
    - three integers: validated as given (errors are not silently fixed).
    """
    dims = geometry.tensor_shape
    if isinstance(spec, str):
        if spec != "full":
            raise InvalidRanksError(f"unknown rank specification {spec!r} (use 'full' or a ratio)")
        return make_feasible(dims, dims)[0]
    if isinstance(spec, bool):
        raise InvalidRanksError(f"invalid rank specification {spec!r}")
    if isinstance(spec, int | float):
        ratios: Sequence[float] = (float(spec),) * 3
    else:
        values = list(spec)
        if len(values) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return validate_ranks(geometry, values)
        if len(values) != 3 or not all(isinstance(v, int | float) for v in values):
            raise InvalidRanksError(
                f"rank specification must be 'full', a ratio, three ratios or three ints; "
                f"got {spec!r}"
            )
        ratios = [float(v) for v in values]
    for ratio in ratios:
        if not 0.0 < ratio <= 1.0 or math.isnan(ratio):
            raise InvalidRanksError(f"rank ratio must be in (0, 1], got {ratio}")
    wanted = [max(1, round(ratio * dim)) for ratio, dim in zip(ratios, dims, strict=True)]
    ranks, _ = make_feasible(wanted, dims)
    return ranks


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
    """Multiply-adds to rebuild the kernel as tucker_ops.reconstruct_kernel does (U_N G_(1),
    then U_D, then U_C): once per forward, not per image."""
    n, c, d = geometry.tensor_shape
    rn, rc, rd = ranks
    return n * rn * rc * rd + n * rc * rd * d + n * c * rc * d


def path_flops(
    geometry: ConvGeometry, ranks: Sequence[int], input_hw: tuple[int, int], implementation: str
) -> int:
    """Multiply-adds for one image of one execution path, including the merges the layer does:
    a full output rank (N' = N) folds U_N into the previous op; in `folded`, a full input rank
    (C' = C) folds U_C into the kernel. `reconstructed` counts the dense conv only; see
    reconstruction_flops for the per-forward kernel rebuild."""
    n, c, d = geometry.tensor_shape
    rn, rc, rd = ranks
    h, w = input_hw
    ho, wo = geometry.output_hw(input_hw)
    out_pixels = ho * wo
    if implementation == "reconstructed":
        return dense_flops(geometry, input_hw)
    if implementation == "factorized":
        head = c * rc * h * w
        spatial = rc * rd * d * out_pixels
        tail = rc * rd * n * out_pixels if rn == n else (rc * rd * rn + rn * n) * out_pixels
        return head + spatial + tail
    if implementation == "folded":
        kernel_in = c if rc == c else rc
        kernel_out = n if rn == n else rn
        head = 0 if rc == c else c * rc * h * w
        tail = 0 if rn == n else rn * n * out_pixels
        return head + kernel_out * kernel_in * d * out_pixels + tail
    raise ValueError(
        f"unknown implementation {implementation!r}; expected one of {IMPLEMENTATIONS}"
    )


def tucker_flops(geometry: ConvGeometry, ranks: Sequence[int], input_hw: tuple[int, int]) -> int:
    """Multiply-adds per image of the cheaper never-materialising path (factorized or folded):
    the cost a Tucker layer has to pay, used for compression figures."""
    return min(path_flops(geometry, ranks, input_hw, p) for p in ("factorized", "folded"))
