"""A latency model of the deployment device: measured latency of single conv layers, dense and
in Tucker form, that a rank allocator can price thousands of triples with.

    table = LatencyTable(TimingSetup("cpu", "float32", threads=1, batch_size=1))
    layer = table.layer(geometry, input_hw)     # measured on first use, then cached
    layer.dense_ms, layer.tucker_ms(n_ranks, c_ranks)   # arrays of N', C' at once
    table.save("latency.json"); LatencyTable.load("latency.json")   # reused, never re-timed

Per layer it times the dense conv and the folded chain (1x1 C -> C', kxk C' -> N', 1x1 N' -> N)
on a grid of (N', C'): powers of two and the full rank of each mode. Between grid points the
latency is interpolated bilinearly. The folded chain does not depend on D' (U_D is folded into
its kernel), so neither does the model. It prices the folded form only: the inference form may
still choose the factorized one where that runs faster, so the model is an upper bound of a
layer's latency in the inference form. Everything of one layer is timed in one round-robin
(timing.py), so its dense and Tucker figures come from the same run.

Entries are keyed by everything that changes a measurement: device, dtype, threads, batch,
the conv's geometry and its input size.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_modules.inference.timing import time_modules, torch_threads
from lightning_modules.tucker import ConvGeometry

TABLE_FORMAT = "tucker-sweep-latency/1"
_GRID_RUNS = 5
_GRID_WARMUP = 2


@dataclass(frozen=True)
class TimingSetup:
    """Where and how latencies are measured."""

    device: str  # "cpu" or "cuda"
    dtype: str  # "float32", "bfloat16", "float16"
    threads: int  # torch CPU threads while timing
    batch_size: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def rank_grid(full: int) -> list[int]:
    """Powers of two below `full`, and `full` itself."""
    grid, rank = [], 1
    while rank < full:
        grid.append(rank)
        rank *= 2
    return [*grid, full]


@dataclass(frozen=True)
class LayerLatency:
    """One conv's measured latencies (ms): dense, and the folded chain on a grid of (N', C')."""

    dense_ms: float
    out_ranks: list[int]
    in_ranks: list[int]
    folded_ms: list[list[float]]  # [i][j]: N' = out_ranks[i], C' = in_ranks[j]

    def tucker_ms(self, out_rank: Any, in_rank: Any) -> np.ndarray:
        """Interpolated latency of the folded chain at N', C' (scalars or arrays)."""
        grid = np.asarray(self.folded_ms)
        rows = _bracket(self.out_ranks, out_rank)
        cols = _bracket(self.in_ranks, in_rank)
        (i0, i1, wi), (j0, j1, wj) = rows, cols
        top = grid[i0, j0] * (1 - wj) + grid[i0, j1] * wj
        bottom = grid[i1, j0] * (1 - wj) + grid[i1, j1] * wj
        return top * (1 - wi) + bottom * wi

    def cost_ms(self, ranks: Any) -> np.ndarray:
        """A triple's latency as the allocator prices it: the Tucker chain or, where that is
        slower, the dense conv (the inference form keeps such a layer dense)."""
        out_rank, in_rank, _ = ranks
        return np.minimum(self.tucker_ms(out_rank, in_rank), self.dense_ms)


def _bracket(points: list[int], value: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the grid points around `value` and the weight of the upper one."""
    axis = np.asarray(points, dtype=np.float64)
    value = np.clip(np.asarray(value, dtype=np.float64), axis[0], axis[-1])
    upper = np.clip(np.searchsorted(axis, value, side="left"), 0, len(axis) - 1)
    lower = np.maximum(upper - 1, 0)
    span = axis[upper] - axis[lower]
    weight = np.where(span > 0, (value - axis[lower]) / np.where(span > 0, span, 1), 0.0)
    return lower, upper, weight


def _folded_chain(
    geometry: ConvGeometry, out_rank: int, in_rank: int, setup: TimingSetup
) -> nn.Module:
    """The folded form's modules at N', C' (random weights: speed does not depend on them)."""
    n, c = geometry.out_channels, geometry.in_channels
    options = {"device": setup.device, "dtype": setup.torch_dtype}
    parts: list[nn.Module] = []
    if in_rank < c:
        parts.append(nn.Conv2d(c, in_rank, 1, bias=False, **options))
    spatial = nn.Conv2d(
        in_rank, out_rank, geometry.kernel_size, stride=geometry.stride,
        padding=geometry.padding, dilation=geometry.dilation, bias=out_rank == n, **options,
    )  # fmt: skip
    parts.append(spatial)
    if out_rank < n:
        parts.append(nn.Conv2d(out_rank, n, 1, **options))
    return nn.Sequential(*parts)


def _dense(geometry: ConvGeometry, setup: TimingSetup) -> nn.Module:
    return nn.Conv2d(
        geometry.in_channels, geometry.out_channels, geometry.kernel_size,
        stride=geometry.stride, padding=geometry.padding, dilation=geometry.dilation,
        device=setup.device, dtype=setup.torch_dtype,
    )  # fmt: skip


def measure_layer(
    geometry: ConvGeometry, input_hw: tuple[int, int], setup: TimingSetup
) -> LayerLatency:
    """Time one conv dense and on the (N', C') grid, in one round-robin."""
    out_ranks, in_ranks = rank_grid(geometry.out_channels), rank_grid(geometry.in_channels)
    modules: dict[str, nn.Module] = {"dense": _dense(geometry, setup)}
    for out_rank in out_ranks:
        for in_rank in in_ranks:
            chain = _folded_chain(geometry, out_rank, in_rank, setup)
            modules[f"{out_rank},{in_rank}"] = chain
    x = torch.randn(setup.batch_size, geometry.in_channels, *input_hw).to(
        setup.device, setup.torch_dtype
    )
    with torch_threads(setup.threads if setup.device == "cpu" else None):
        seconds = time_modules(modules, x, _GRID_RUNS, _GRID_WARMUP)
    folded = [[1000 * seconds[f"{o},{i}"] for i in in_ranks] for o in out_ranks]
    return LayerLatency(1000 * seconds["dense"], out_ranks, in_ranks, folded)


def layer_key(geometry: ConvGeometry, input_hw: tuple[int, int]) -> str:
    """The part of an entry's key that is the layer's: geometry and input size."""
    g = geometry
    return (
        f"{g.out_channels}x{g.in_channels}x{g.kernel_size[0]}x{g.kernel_size[1]}"
        f"/s{g.stride[0]},{g.stride[1]}/p{g.padding}/d{g.dilation[0]},{g.dilation[1]}"
        f"/in{input_hw[0]}x{input_hw[1]}"
    ).replace(" ", "")


class LatencyTableError(ValueError):
    """A table file this code cannot use, or a lookup a frozen table cannot answer."""


class LatencyTable:
    """Measured layer latencies for one TimingSetup, measured lazily and cached. A table read
    back from a file is frozen: a layer it lacks is an error, not a measurement on whatever
    device reads it."""

    def __init__(self, setup: TimingSetup, frozen: bool = False) -> None:
        self.setup = setup
        self.frozen = frozen
        self._layers: dict[str, LayerLatency] = {}

    def key(self, geometry: ConvGeometry, input_hw: tuple[int, int]) -> str:
        s = self.setup
        return f"{s.device}/{s.dtype}/t{s.threads}/b{s.batch_size}/{layer_key(geometry, input_hw)}"

    def layer(self, geometry: ConvGeometry, input_hw: tuple[int, int]) -> LayerLatency:
        key = self.key(geometry, tuple(input_hw))  # type: ignore[arg-type]
        found = self._layers.get(key)
        if found is None:
            if self.frozen:
                raise LatencyTableError(
                    f"the latency table has no entry for {key}; seed the sweep again"
                )
            found = measure_layer(geometry, tuple(input_hw), self.setup)  # type: ignore[arg-type]
            self._layers[key] = found
        return found

    def __len__(self) -> int:
        return len(self._layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "setup": asdict(self.setup),
            "layers": {key: asdict(value) for key, value in self._layers.items()},
        }

    @classmethod
    def from_json(cls, payload: Any) -> LatencyTable:
        if not isinstance(payload, dict) or payload.get("format") != TABLE_FORMAT:
            raise LatencyTableError(f"not a latency table ({TABLE_FORMAT})")
        try:
            table = cls(TimingSetup(**payload["setup"]), frozen=True)
            for key, value in payload["layers"].items():
                table._layers[str(key)] = LayerLatency(**value)
        except (KeyError, TypeError) as error:
            raise LatencyTableError(f"a malformed latency table: {error}") from None
        return table

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w") as file:
            json.dump(self.to_json(), file, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        with open(path) as file:
            return cls.from_json(json.load(file))
