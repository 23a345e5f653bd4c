"""The shape of a 2-D convolution and the Tucker ranks of its kernel, as plain values.

A conv kernel N x C x kh x kw is treated as the 3-way tensor N x C x D (D = kh*kw) with Tucker
ranks (N', C', D'); see docs/design.md, "The Tucker form".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


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
