"""From a sweep config (and optionally a seed) to the Ray Tune search space, and back.

Rank triples are encoded as strings "N'xC'xD'" ("16x8x3"): Optuna takes only plain scalars
as categorical choices, and Ray's random and grid search take anything. The trainable decodes
them with `decode_trial`.

    mode per_layer: {"ranks.block2.conv1": choice(["8x4x2", "16x8x3"]), ..., "lr": ..., "init": ...}
    mode ratio:     {"ratio_out": choice([...]), "ratio_in": ..., "ratio_spatial": ..., ...}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray import tune

from lightning_modules.models import ConvLayer
from lightning_modules.tucker_cost import TuckerRanks, ranks_from_spec
from sweep.config import LearningRateRange, SweepConfig
from sweep.errors import ConfigError

if TYPE_CHECKING:
    from sweep.seed_file import SeedFile

# No "/" in keys: Ray's Optuna integration flattens nested spaces on "/".
RANKS_PREFIX = "ranks."
RATIO_KEYS = ("ratio_out", "ratio_in", "ratio_spatial")


def encode_ranks(ranks: Sequence[int]) -> str:
    return "x".join(str(int(r)) for r in ranks)


def decode_ranks(text: str) -> TuckerRanks:
    parts = text.split("x")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"not an encoded rank triple: {text!r} (expected e.g. '16x8x3')")
    return TuckerRanks(*(int(part) for part in parts))


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
    config: SweepConfig, layers: Sequence[ConvLayer], seed: SeedFile | None = None
) -> RankSpace:
    """Per-layer candidates come from the seed when there is one (its layers must match),
    else from the ratio lists."""
    chosen = select_layers(config, layers)
    ratios = config.decomposition.ratios.as_tuple()
    if config.decomposition.mode == "ratio":
        return RankSpace("ratio", {}, ratios, seeded=False)
    if seed is None:
        choices = {layer.name: ratio_triples(layer, ratios) for layer in chosen}
        return RankSpace("per_layer", choices, ratios, seeded=False)
    missing = [layer.name for layer in chosen if layer.name not in seed.layer_names()]
    if missing:
        raise ConfigError(
            f"the seed has no candidates for layer(s) {', '.join(missing)}: seed the same model"
        )
    choices = {layer.name: compressing_candidates(seed, layer.name) for layer in chosen}
    return RankSpace("per_layer", choices, ratios, seeded=True)


def compressing_candidates(seed: SeedFile, layer: str) -> list[TuckerRanks]:
    """The seed's candidates with fewer parameters than the dense conv: a Tucker layer larger
    than what it replaces has no place in a compression sweep (high energy thresholds on a
    flat spectrum give such triples). If none compresses, the most compressive one."""
    entries = seed.layers[layer].candidates
    useful = [entry for entry in entries if entry.compression > 1.0]
    if not useful:
        useful = [max(entries, key=lambda entry: entry.compression)]
    return [TuckerRanks(*entry.ranks) for entry in useful]


def _categorical(values: Sequence[Any], grid: bool) -> Any:
    values = list(values)
    if len(values) == 1:
        return values[0]  # a constant is not a search dimension
    return tune.grid_search(values) if grid else tune.choice(values)


def param_space(config: SweepConfig, space: RankSpace) -> dict[str, Any]:
    """The Ray Tune `param_space` for the Tuner."""
    grid = config.search.algorithm == "grid"
    params: dict[str, Any] = {}
    if space.mode == "ratio":
        for key, choices in zip(RATIO_KEYS, space.ratio_choices, strict=True):
            params[key] = _categorical(choices, grid)
    else:
        for name, choices in space.layer_choices.items():
            params[RANKS_PREFIX + name] = _categorical([encode_ranks(r) for r in choices], grid)
    lr = config.search.lr
    if isinstance(lr, LearningRateRange):
        params["lr"] = (tune.loguniform if lr.log else tune.uniform)(lr.low, lr.high)
    elif isinstance(lr, list):
        params["lr"] = _categorical(lr, grid)
    else:
        params["lr"] = lr
    params["init"] = _categorical(config.decomposition.init, grid)
    return params


def trial_count(config: SweepConfig, params: Mapping[str, Any]) -> int:
    """Trials a sweep creates: num_samples, times every grid dimension of `params`."""
    grid = math.prod(
        len(value["grid_search"])
        for value in params.values()
        if isinstance(value, dict) and "grid_search" in value
    )
    return config.search.num_samples * grid


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
            key.removeprefix(RANKS_PREFIX): decode_ranks(value)
            for key, value in trial_config.items()
            if key.startswith(RANKS_PREFIX)
        }
    return TrialPlan(plan, float(trial_config["lr"]), str(trial_config["init"]))
