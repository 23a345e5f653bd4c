"""Global rank allocation: one rank triple per layer so that the decomposed convs meet a cost
budget (a target compression of their parameters or FLOPs), chosen from the layers' mode
spectra by the truncated-HOSVD error bound of error_bound.py (docs/design.md, "Rank allocation").

    layers = [LayerSpectra(name, geometry, spectra, input_hw), ...]
    plan = allocate_minimax(layers, target_compression=8.0, metric="params")
    plan.ranks["block2.conv1"], plan.max_error, plan.compression

`allocate_minimax` minimises the largest estimated relative error across layers, as ALDS
(Liebenwein et al. 2021) does; `allocate_uniform_threshold` keeps one energy share of every
mode of every layer, the simpler rule to compare it with. Both bisect on one number (the error
level, the threshold), are deterministic and take milliseconds.

metric "latency" prices a triple by a measured latency model of the deployment device
(LayerSpectra.latency, lightning_modules/inference/latency_table.py), and the target is a
speed-up of the decomposed convs. A layer none of whose triples within the error level runs
faster than its dense conv stays dense (Allocation.dense_layers): a Tucker layer that does not
pay is not decomposed, as with the 1x1 convs of inverted-residual nets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from lightning_modules.ranks.error_bound import estimated_error, left_out_energy
from lightning_modules.ranks.spectra import ModeSpectra
from lightning_modules.tucker import ConvGeometry, TuckerRanks, make_feasible
from lightning_modules.tucker.cost import (
    dense_flops,
    dense_param_count,
    tucker_flops,
    tucker_param_count,
)

if TYPE_CHECKING:
    from lightning_modules.inference.latency_table import LayerLatency

BudgetMetric = Literal["params", "flops", "latency"]
METRICS: tuple[str, ...] = ("params", "flops", "latency")
# In a plan under construction: this layer stays a dense conv (latency budgets only).
KEEP_DENSE = TuckerRanks(0, 0, 0)
_BISECTION_STEPS = 60  # halves the interval to below 1e-18 of its width
# Error levels are compared as squared errors (sums of left-out energy shares), never through a
# square root and back: sqrt(x)**2 differs from x in the last bit for most x, and which way it
# rounds decided whether a layer's own (1, 1, 1) fitted at its own error. The slack covers the
# round-off of summing three shares in another order (a few ulp of a number at most 1), and no
# more: any two distinct plans of real spectra differ by far more than 1e-9 of the level.
_RELATIVE_SLACK = 1e-9
_ABSOLUTE_SLACK = 1e-15


class AllocationError(ValueError):
    """Inputs the allocator cannot use (no layers, a bad target, FLOPs without input sizes)."""


@dataclass(frozen=True)
class LayerSpectra:
    """What the allocator knows of a conv: its geometry, its mode spectra (of trained weights),
    and its input size (needed to count FLOPs)."""

    name: str
    geometry: ConvGeometry
    spectra: ModeSpectra
    input_hw: tuple[int, int] | None = None
    latency: LayerLatency | None = None  # measured on the deployment device (latency budgets)


@dataclass(frozen=True)
class Allocation:
    """A rank plan for the layers, its estimated errors and what it costs under the metric."""

    ranks: dict[str, TuckerRanks]  # the layers to decompose
    errors: dict[str, float]  # estimated relative error ||W - W_hat|| / ||W|| per layer
    cost: float  # of the decomposable convs, without bias (ms for latency)
    dense_cost: float
    target_compression: float
    metric: str
    dense_layers: tuple[str, ...] = ()  # kept dense: no triple ran faster (latency only)

    @property
    def compression(self) -> float:
        return self.dense_cost / self.cost

    @property
    def max_error(self) -> float:
        return max(self.errors.values())

    @property
    def met(self) -> bool:
        """Whether the plan reaches the target compression (it cannot when even rank 1 in
        every mode costs too much; the plan is then the cheapest one)."""
        return self.cost * self.target_compression <= self.dense_cost * (1 + 1e-12)


class _Layer:
    """One layer's error tails and cost function, for pricing many triples at once."""

    def __init__(self, layer: LayerSpectra, metric: str) -> None:
        self.name = layer.name
        self.geometry = layer.geometry
        dims = layer.geometry.tensor_shape
        self.tails = [
            left_out_energy(spectrum, dim)
            for spectrum, dim in zip(layer.spectra.as_tuple(), dims, strict=True)
        ]
        self.keeps_dense = metric == "latency"
        if metric == "latency":
            latency = layer.latency
            if latency is None:
                raise AllocationError(f"{layer.name}: a latency budget needs its latency model")
            self.cost = latency.cost_ms
            self.dense_cost = latency.dense_ms
        elif metric == "flops":
            if layer.input_hw is None:
                raise AllocationError(f"{layer.name}: a FLOPs budget needs the layer's input size")
            hw = layer.input_hw
            self.cost: Callable = lambda ranks: tucker_flops(self.geometry, ranks, hw)
            self.dense_cost = dense_flops(self.geometry, hw)
        else:
            self.cost = lambda ranks: tucker_param_count(self.geometry, ranks, bias=False)
            self.dense_cost = dense_param_count(self.geometry, bias=False)
        # Every (N', D') pair; C' is chosen per error level (see cheapest_within).
        n, _, d = dims
        grid_n, grid_d = np.meshgrid(np.arange(1, n + 1), np.arange(1, d + 1), indexing="ij")
        self.out_ranks, self.spatial_ranks = grid_n.ravel(), grid_d.ravel()
        # -tails is non-decreasing: searchsorted finds the smallest C' within an energy budget.
        self.negative_in_tail = -self.tails[1]

    def error(self, ranks: Sequence[int]) -> float:
        if ranks == KEEP_DENSE:
            return 0.0
        return estimated_error(self.tails, ranks)

    def price(self, ranks: Sequence[int]) -> float:
        """What a plan entry costs: the dense conv's own cost for KEEP_DENSE."""
        return float(self.dense_cost if ranks == KEEP_DENSE else self.cost(ranks))

    def settled(self, ranks: TuckerRanks) -> TuckerRanks:
        """KEEP_DENSE for a triple no faster than the dense conv (latency), else the triple."""
        if self.keeps_dense and self.price(ranks) >= self.dense_cost:
            return KEEP_DENSE
        return ranks

    def full_ranks(self) -> TuckerRanks:
        dims = self.geometry.tensor_shape
        return make_feasible(dims, dims)[0]

    def squared_error(self, ranks: Sequence[int]) -> float:
        if ranks == KEEP_DENSE:
            return 0.0
        return sum(float(t[r]) for t, r in zip(self.tails, ranks, strict=True))

    def cheapest_ranks(self) -> TuckerRanks:
        """Rank 1 in every mode: always feasible, and the cheapest triple under every metric
        (each cost grows with every rank; latency's up to timing noise), or KEEP_DENSE where
        even that runs no faster than the dense conv."""
        return self.settled(TuckerRanks(1, 1, 1))

    def cheapest_within(self, squared_level: float) -> TuckerRanks | None:
        """The cheapest feasible triple whose estimated squared error is at most
        `squared_level`, up to round-off (ties: the smaller error, then the smaller ranks);
        None if there is none."""
        out_ranks, spatial_ranks = self.out_ranks, self.spatial_ranks
        _, c, _ = self.geometry.tensor_shape
        allowed = squared_level * (1 + _RELATIVE_SLACK) + _ABSOLUTE_SLACK
        room = allowed - self.tails[0][out_ranks] - self.tails[2][spatial_ranks]
        in_ranks = np.searchsorted(self.negative_in_tail, -room, side="left")
        # Feasibility (docs/design.md, "The Tucker form"): raising C' only lowers the error.
        in_ranks = np.maximum(in_ranks, 1)
        in_ranks = np.maximum(in_ranks, -(-out_ranks // spatial_ranks))  # N' <= C'D'
        in_ranks = np.maximum(in_ranks, -(-spatial_ranks // out_ranks))  # D' <= N'C'
        usable = (room >= 0) & (in_ranks <= np.minimum(c, out_ranks * spatial_ranks))
        if not usable.any():
            return None
        out_ranks, in_ranks, spatial_ranks = (
            out_ranks[usable],
            in_ranks[usable],
            spatial_ranks[usable],
        )
        costs = np.asarray(self.cost((out_ranks, in_ranks, spatial_ranks)))
        errors = self.tails[0][out_ranks] + self.tails[1][in_ranks] + self.tails[2][spatial_ranks]
        best = np.lexsort((spatial_ranks, in_ranks, out_ranks, errors, costs))[0]
        ranks = TuckerRanks(int(out_ranks[best]), int(in_ranks[best]), int(spatial_ranks[best]))
        return self.settled(ranks)


def _prepare(
    layers: Sequence[LayerSpectra], target_compression: float, metric: str
) -> list[_Layer]:
    if metric not in METRICS:
        raise AllocationError(f"budget metric must be one of {METRICS}, got {metric!r}")
    if not layers:
        raise AllocationError("no layers to allocate ranks to")
    if not (target_compression >= 1.0 and math.isfinite(target_compression)):
        raise AllocationError(f"target compression must be at least 1, got {target_compression}")
    return [_Layer(layer, metric) for layer in layers]


def _plan_cost(prepared: list[_Layer], plan: list[TuckerRanks]) -> float:
    return sum(layer.price(r) for layer, r in zip(prepared, plan, strict=True))


def _allocation(
    prepared: list[_Layer], plan: list[TuckerRanks], target: float, metric: str
) -> Allocation:
    pairs = list(zip(prepared, plan, strict=True))
    cost, dense_cost = _plan_cost(prepared, plan), sum(layer.dense_cost for layer in prepared)
    if metric != "latency":  # counts stay integers
        cost, dense_cost = int(cost), int(dense_cost)
    return Allocation(
        ranks={layer.name: ranks for layer, ranks in pairs if ranks != KEEP_DENSE},
        errors={layer.name: layer.error(r) for layer, r in pairs},
        cost=cost,
        dense_cost=dense_cost,
        target_compression=target,
        metric=metric,
        dense_layers=tuple(layer.name for layer, ranks in pairs if ranks == KEEP_DENSE),
    )


def _bisect(
    plan_at: Callable[[float], list[TuckerRanks]],
    cost_of: Callable[[list[TuckerRanks]], float],
    budget: float,
    lossless: float,
    cheapest: float,
    cheapest_plan: list[TuckerRanks],
) -> list[TuckerRanks]:
    """The plan at the point of [lossless, cheapest] closest to `lossless` whose cost is
    within the budget (cost falls as the point moves towards `cheapest`). An unreachable
    budget gets `cheapest_plan` itself, by construction rather than from `plan_at(cheapest)`,
    whose answer at the interval's very end is the one most exposed to round-off."""
    plan = plan_at(lossless)
    if cost_of(plan) <= budget:
        return plan
    if cost_of(cheapest_plan) > budget:
        return cheapest_plan
    plan = cheapest_plan
    low, high = lossless, cheapest
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        candidate = plan_at(middle)
        if cost_of(candidate) <= budget:
            high, plan = middle, candidate
        else:
            low = middle
    return plan


def allocate_minimax(
    layers: Sequence[LayerSpectra], target_compression: float, metric: BudgetMetric = "params"
) -> Allocation:
    """Ranks that meet `dense cost / target_compression` with the smallest largest estimated
    error across layers. Bisection on the error level e: each layer takes its cheapest triple
    whose error is at most e, and the smallest e whose plan fits the budget wins; a plan with a
    smaller largest error would make every layer at least as expensive as at that e."""
    prepared = _prepare(layers, target_compression, metric)
    budget = sum(layer.dense_cost for layer in prepared) / target_compression

    def plan_at(squared_level: float) -> list[TuckerRanks]:
        # The feasible full ranks are lossless, so every level has a triple; the fallback only
        # guards against round-off in the tails.
        return [
            layer.cheapest_within(squared_level) or layer.settled(layer.full_ranks())
            for layer in prepared
        ]

    def cost_of(plan: list[TuckerRanks]) -> float:
        return _plan_cost(prepared, plan)

    cheapest_plan = [layer.cheapest_ranks() for layer in prepared]
    worst = max(layer.squared_error(r) for layer, r in zip(prepared, cheapest_plan, strict=True))
    plan = _bisect(plan_at, cost_of, budget, 0.0, worst, cheapest_plan)
    return _allocation(prepared, plan, target_compression, metric)


def allocate_uniform_threshold(
    layers: Sequence[LayerSpectra], target_compression: float, metric: BudgetMetric = "params"
) -> Allocation:
    """Ranks that keep the same share of the energy in every mode of every layer, the largest
    share whose plan meets the budget (energy ranks made feasible by raising ranks)."""
    prepared = _prepare(layers, target_compression, metric)
    budget = sum(layer.dense_cost for layer in prepared) / target_compression

    def ranks_leaving(layer: _Layer, left_out: float) -> TuckerRanks:
        # Per mode, the smallest rank whose left-out energy is at most `left_out`, made
        # feasible as the seed's energy candidates are (the smallest change).
        raw = [max(1, int(np.searchsorted(-tails, -left_out))) for tails in layer.tails]
        return layer.settled(make_feasible(raw, layer.geometry.tensor_shape)[0])

    def plan_at(left_out: float) -> list[TuckerRanks]:
        return [ranks_leaving(layer, left_out) for layer in prepared]

    def cost_of(plan: list[TuckerRanks]) -> float:
        return _plan_cost(prepared, plan)

    cheapest_plan = [layer.cheapest_ranks() for layer in prepared]
    plan = _bisect(plan_at, cost_of, budget, 0.0, 1.0, cheapest_plan)
    return _allocation(prepared, plan, target_compression, metric)
