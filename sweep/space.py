"""The rank space of a sweep: which rank plans a config (and optionally a seed) allows, and a
trial's plan decoded from its sampled choices. The Ray Tune form of the space is in
sweep.tuning.tune_space; the keys and the text of a rank triple in sweep.trial_params.

    mode per_layer: one candidate triple per layer (from the seed, or the ratio lists)
    mode ratio:     one ratio per mode, the same for every layer
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightning_modules.nets import ConvLayer
from lightning_modules.tucker import TuckerRanks, ranks_from_spec
from sweep.config import SweepConfig
from sweep.errors import ConfigError
from sweep.trial_params import INIT_KEY, LR_KEY, RATIO_KEYS, TUNE_RANKS_PREFIX, decode_ranks


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
        raise ConfigError(f"model {config.model.name!r} has no conv layer to decompose")
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
class RankSpace:
    """The discrete rank choices of a sweep: per layer (`per_layer`) or per mode (`ratio`)."""

    mode: str
    layer_choices: Mapping[str, list[TuckerRanks]]  # per_layer
    ratio_choices: tuple[list[float], list[float], list[float]]  # ratio
    seeded: bool

    def size(self) -> int:
        """Number of distinct rank plans."""
        if self.mode == "ratio":
            return math.prod(len(choices) for choices in self.ratio_choices)
        return math.prod(len(choices) for choices in self.layer_choices.values())


def build_rank_space(
    config: SweepConfig,
    layers: Sequence[ConvLayer],
    seeded: Mapping[str, Sequence[TuckerRanks]] | None = None,
) -> RankSpace:
    """Per-layer candidates come from the seed when there is one (`seeded`: layer -> its
    compressing candidates, which must cover the chosen layers), else from the ratio lists."""
    chosen = select_layers(config, layers)
    ratios = config.decomposition.ratios.as_tuple()
    if config.decomposition.mode == "ratio":
        return RankSpace("ratio", {}, ratios, seeded=False)
    if seeded is None:
        choices = {layer.name: ratio_triples(layer, ratios) for layer in chosen}
        return RankSpace("per_layer", choices, ratios, seeded=False)
    missing = [layer.name for layer in chosen if layer.name not in seeded]
    if missing:
        raise ConfigError(
            f"the seed has no candidates for layer(s) {', '.join(missing)}: seed the same model"
        )
    choices = {layer.name: list(seeded[layer.name]) for layer in chosen}
    return RankSpace("per_layer", choices, ratios, seeded=True)


@dataclass(frozen=True)
class TrialPlan:
    """A trial's decoded choices."""

    rank_plan: dict[str, TuckerRanks]
    lr: float
    init: str


def decode_trial(
    trial_config: Mapping[str, Any], config: SweepConfig, layers: Sequence[ConvLayer]
) -> TrialPlan:
    """Rank plan, learning rate and init of one trial from its sampled config."""
    if any(key in trial_config for key in RATIO_KEYS):
        ratios = tuple(float(trial_config[key]) for key in RATIO_KEYS)
        plan = {
            layer.name: ranks_from_spec(layer.geometry, ratios)
            for layer in select_layers(config, layers)
        }
    else:
        plan = {
            key.removeprefix(TUNE_RANKS_PREFIX): TuckerRanks(*decode_ranks(value))
            for key, value in trial_config.items()
            if key.startswith(TUNE_RANKS_PREFIX)
        }
    return TrialPlan(plan, float(trial_config[LR_KEY]), str(trial_config[INIT_KEY]))
