"""The rank space of a sweep: which rank plans a config (and optionally a seed) allows, and a
trial's plan decoded from its sampled choices. The Ray Tune form of the space is in
sweep.tuning.tune_space; the keys and the text of a rank triple in sweep.trial_params.

    mode per_layer: one candidate triple per layer (from the seed, or the ratio lists)
    mode ratio:     one ratio per mode, the same for every layer
    mode budget:    one compression target per trial; the allocator gives per-layer ranks
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightning_modules.inference.latency_table import LatencyTable
from lightning_modules.nets import ConvLayer
from lightning_modules.ranks import ModeSpectra
from lightning_modules.ranks.allocation import (
    Allocation,
    LayerSpectra,
    allocate_minimax,
    allocate_uniform_threshold,
)
from lightning_modules.tucker import TuckerRanks, ranks_from_spec
from sweep.config import SearchRange, SweepConfig
from sweep.errors import ConfigError
from sweep.trial_params import (
    COMPRESSION_KEY,
    INIT_KEY,
    LR_KEY,
    RATIO_KEYS,
    TUNE_RANKS_PREFIX,
    decode_ranks,
)


def select_layers(config: SweepConfig, layers: Sequence[ConvLayer]) -> list[ConvLayer]:
    """The convs the sweep decomposes: `decomposition.layers` names, or all but the input."""
    wanted = config.decomposition.layers
    if wanted == "all":
        chosen = [layer for layer in layers if not layer.is_input_layer]
    else:
        by_name = {layer.name: layer for layer in layers}
        unknown = [name for name in wanted if name not in by_name]
        if unknown:
            raise ConfigError(
                f"decomposition.layers: unknown layer(s) {', '.join(unknown)}; "
                f"decomposable layers: {', '.join(by_name)}"
            )
        chosen = [by_name[name] for name in wanted]
    if not chosen:
        raise ConfigError(f"model {config.model.spec!r} has no conv layer to decompose")
    return chosen


def ratio_triples(layer: ConvLayer, ratios: Sequence[Sequence[float]]) -> list[TuckerRanks]:
    """The distinct feasible triples from per-mode ratio lists (unseeded candidates)."""
    out_ratios, in_ratios, spatial_ratios = ratios
    triples = {
        ranks_from_spec(layer.geometry, (r_out, r_in, r_spatial))
        for r_out in out_ratios
        for r_in in in_ratios
        for r_spatial in spatial_ratios
    }
    return sorted(triples)


@dataclass(frozen=True)
class SeedData:
    """What a seed gives the rank space, per layer: its compressing candidate triples
    (`per_layer`) and its mode spectra (`budget`)."""

    candidates: Mapping[str, Sequence[TuckerRanks]]
    spectra: Mapping[str, ModeSpectra]


@dataclass(frozen=True)
class TrialPlan:
    """A trial's decoded choices; in budget mode also its compression target and the
    allocator's estimated error of the plan (the largest across layers)."""

    rank_plan: dict[str, TuckerRanks]
    lr: float
    init: str
    target_compression: float | None = None
    estimated_error: float | None = None


# A cut latency range still spans at least this factor, so trials differ.
LATENCY_RANGE_MIN_SPAN = 1.5


@dataclass(frozen=True)
class BudgetAllocation:
    """The allocator a budget-mode space turns a compression target into ranks with."""

    layers: tuple[LayerSpectra, ...]
    metric: str
    allocator: str

    def allocate(self, target: float) -> Allocation:
        allocate = allocate_minimax if self.allocator == "minimax" else allocate_uniform_threshold
        return allocate(self.layers, target, self.metric)  # type: ignore[arg-type]

    def reachable(self) -> float:
        """The largest compression any plan reaches: that of the cheapest plan (rank 1, or
        dense where even rank 1 does not pay)."""
        return self.allocate(1e12).compression  # a target no plan meets: the cheapest plan

    def searched_range(self, wanted: SearchRange) -> SearchRange | float:
        """The range of targets trials sample. A latency budget's is cut at what the latency
        table says is reachable: above it every target gets the same cheapest plan, and the
        trials would all train one network. Params and FLOPs ranges stay as given."""
        if self.metric != "latency":
            return wanted
        reachable = self.reachable()
        if reachable <= 1.0 + 1e-9:
            return 1.0  # no layer runs faster decomposed: every plan is the dense network
        high = min(wanted.high, reachable)
        low = min(wanted.low, high / LATENCY_RANGE_MIN_SPAN)
        return SearchRange(low=max(low, 1.0), high=high, log=wanted.log)


@dataclass(frozen=True)
class RankSpace:
    """The rank choices of a sweep: a candidate triple per layer (`per_layer`), one ratio per
    mode (`ratio`), or a compression target per trial (`budget`), over the decomposed convs."""

    mode: str
    layers: tuple[ConvLayer, ...]
    layer_choices: Mapping[str, list[TuckerRanks]]  # per_layer
    ratio_choices: tuple[list[float], list[float], list[float]]  # ratio
    seeded: bool
    budget: BudgetAllocation | None = None  # budget

    def size(self) -> int | None:
        """Number of distinct rank plans; None for budget mode (a continuous target)."""
        if self.mode == "budget":
            return None
        if self.mode == "ratio":
            return math.prod(len(choices) for choices in self.ratio_choices)
        return math.prod(len(choices) for choices in self.layer_choices.values())

    def decode(self, trial_config: Mapping[str, Any]) -> TrialPlan:
        """Rank plan, learning rate and init of one trial from its sampled Tune config."""
        lr, init = float(trial_config[LR_KEY]), str(trial_config[INIT_KEY])
        if self.mode == "budget":
            assert self.budget is not None
            target = float(trial_config[COMPRESSION_KEY])
            allocation = self.budget.allocate(target)
            return TrialPlan(allocation.ranks, lr, init, target, allocation.max_error)
        if self.mode == "ratio":
            ratios = tuple(float(trial_config[key]) for key in RATIO_KEYS)
            plan = {layer.name: ranks_from_spec(layer.geometry, ratios) for layer in self.layers}
            return TrialPlan(plan, lr, init)
        plan = {
            key.removeprefix(TUNE_RANKS_PREFIX): TuckerRanks(*decode_ranks(value))
            for key, value in trial_config.items()
            if key.startswith(TUNE_RANKS_PREFIX)
        }
        return TrialPlan(plan, lr, init)


def _budget(
    config: SweepConfig,
    chosen: list[ConvLayer],
    spectra: Mapping[str, ModeSpectra],
    input_hw: Mapping[str, tuple[int, int]] | None,
    latency: LatencyTable | None,
) -> BudgetAllocation:
    decomposition = config.decomposition
    metric = decomposition.budget_metric
    if metric in ("flops", "latency") and not input_hw:
        raise ConfigError(f"decomposition.budget_metric: {metric} needs the layers' input sizes")
    if metric == "latency" and latency is None:
        raise ConfigError(
            "decomposition.budget_metric: latency needs the sweep's latency table (measured "
            "with the seed)"
        )
    hw = input_hw or {}

    def described(layer: ConvLayer) -> LayerSpectra:
        timed = None
        if metric == "latency" and latency is not None:
            timed = latency.layer(layer.geometry, hw[layer.name])
        return LayerSpectra(layer.name, layer.geometry, spectra[layer.name], hw.get(layer.name),
                            timed)  # fmt: skip

    layers = tuple(described(layer) for layer in chosen)
    return BudgetAllocation(layers, decomposition.budget_metric, decomposition.allocator)


def build_rank_space(
    config: SweepConfig,
    layers: Sequence[ConvLayer],
    seed: SeedData | None = None,
    input_hw: Mapping[str, tuple[int, int]] | None = None,
    latency: LatencyTable | None = None,
) -> RankSpace:
    """The sweep's rank space over the chosen layers. Per-layer candidates come from the seed
    when there is one (it must cover the chosen layers), else from the ratio lists; budget mode
    needs the seed's spectra (and, for a FLOPs or latency budget, each layer's input size
    `input_hw`; for a latency budget, the latency table measured with the seed)."""
    chosen = select_layers(config, layers)
    ratios = config.decomposition.ratios.as_tuple()
    mode = config.decomposition.mode
    if mode == "ratio":
        return RankSpace("ratio", tuple(chosen), {}, ratios, seeded=False)
    if seed is None:
        if mode == "budget":
            raise ConfigError("decomposition.mode: budget needs a seed (decomposition.seed: true)")
        choices = {layer.name: ratio_triples(layer, ratios) for layer in chosen}
        return RankSpace("per_layer", tuple(chosen), choices, ratios, seeded=False)
    missing = [layer.name for layer in chosen if layer.name not in seed.candidates]
    if missing:
        raise ConfigError(
            f"the seed has no candidates for layer(s) {', '.join(missing)}: seed the same model"
        )
    if mode == "budget":
        budget = _budget(config, chosen, seed.spectra, input_hw, latency)
        return RankSpace("budget", tuple(chosen), {}, ratios, seeded=True, budget=budget)
    choices = {layer.name: list(seed.candidates[layer.name]) for layer in chosen}
    return RankSpace("per_layer", tuple(chosen), choices, ratios, seeded=True)


def per_layer_sizes(
    config: SweepConfig, layers: Sequence[ConvLayer], seed: SeedData | None
) -> tuple[int | None, int]:
    """How many plans `mode: per_layer` would have over the chosen layers, with the seed's
    candidates (None without a seed) and with the ratio lists: what seeding narrows."""
    chosen = select_layers(config, layers)
    ratios = config.decomposition.ratios.as_tuple()
    unseeded = math.prod(len(ratio_triples(layer, ratios)) for layer in chosen)
    if seed is None:
        return None, unseeded
    return math.prod(len(seed.candidates[layer.name]) for layer in chosen), unseeded


def describe(space: RankSpace) -> str:
    """One line on the size of the space, for progress messages."""
    if space.budget is not None:
        budget = space.budget
        text = (
            f"a compression target per trial, {budget.allocator} allocation of "
            f"{budget.metric} over {len(space.layers)} layers"
        )
        if budget.metric == "latency":
            text += (
                f" (the latency table's fastest plan: {budget.reachable():.2f}x the dense "
                "convs' speed)"
            )
        return text
    return f"{space.size():,} plans" + (" (seeded)" if space.seeded else "")
