"""The Ray Tune search space over rank triples: encoding, feasibility, searchers."""

from pathlib import Path

import pytest
import torch
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import generate_variants

from lightning_modules.nets import build_model, conv_layers
from lightning_modules.tucker import TuckerConv2d, validate_ranks
from sweep.config import SweepConfig, build_config
from sweep.errors import ConfigError
from sweep.space import build_rank_space, decode_trial, ratio_triples
from sweep.trial_params import TUNE_RANKS_PREFIX, decode_ranks, encode_ranks
from sweep.tuning.tune_space import param_space, trial_count

LAYERS = tuple(conv_layers(build_model("vgg_small", 1, 10, width=16)))


def config(**sections) -> SweepConfig:
    return SweepConfig.model_validate(sections)


def test_rank_triples_round_trip_as_plain_strings():
    assert encode_ranks((16, 8, 3)) == "16x8x3"
    assert decode_ranks("16x8x3") == (16, 8, 3)
    for bad in ("16x8", "16x8x3x1", "ax8x3", "16,8,3"):
        with pytest.raises(ValueError, match="not an encoded rank triple"):
            decode_ranks(bad)


def test_unseeded_candidates_are_feasible_and_build_layers():
    ratios = config().decomposition.ratios.as_tuple()
    for layer in LAYERS:
        triples = ratio_triples(layer, ratios)
        assert len(triples) == len(set(triples)) > 1
        for triple in triples:
            validate_ranks(layer.geometry, triple)
            g = layer.geometry
            conv = TuckerConv2d(g.in_channels, g.out_channels, g.kernel_size, triple, padding=1)
            assert conv(torch.randn(1, g.in_channels, 4, 4)).shape[1] == g.out_channels


def test_per_layer_space_skips_the_input_conv_and_decodes():
    space = build_rank_space(config(), LAYERS)
    assert not space.seeded
    assert "block1.conv1" not in space.layer_choices
    params = param_space(config(), space)
    assert {key for key in params if key.startswith(TUNE_RANKS_PREFIX)} == {
        TUNE_RANKS_PREFIX + layer.name for layer in LAYERS[1:]
    }
    (sampled,) = [variant for _, variant in generate_variants(params)]
    plan = decode_trial(sampled, config(), LAYERS)
    assert set(plan.rank_plan) == {layer.name for layer in LAYERS[1:]}
    assert 0.02 <= plan.lr <= 0.1 and plan.init in ("hooi", "random")
    for name, ranks in plan.rank_plan.items():
        assert ranks in space.layer_choices[name]


def test_ratio_mode_applies_one_ratio_per_mode_to_every_layer():
    settings = config(decomposition={"mode": "ratio", "ratios": {"out": [0.25], "in": [0.5],
                                                                 "spatial": [1.0]}})  # fmt: skip
    space = build_rank_space(settings, LAYERS)
    assert space.size() == 1
    params = param_space(settings, space)
    assert params["ratio_out"] == 0.25  # a single choice is a constant, not a dimension
    plan = decode_trial({**params, "lr": 0.05, "init": "random"}, settings, LAYERS)
    assert plan.rank_plan["block3.conv2"] == (16, 32, 9)


def test_grid_search_enumerates_every_combination():
    settings = config(
        decomposition={"mode": "ratio", "init": ["random"],
                       "ratios": {"out": [0.25, 0.5], "in": [0.25, 0.5], "spatial": [1.0]}},
        search={"algorithm": "grid", "lr": [0.05, 0.1], "num_samples": 1},
    )  # fmt: skip
    params = param_space(settings, build_rank_space(settings, LAYERS))
    variants = [variant for _, variant in generate_variants(params)]
    assert len(variants) == trial_count(settings, params) == 2 * 2 * 2
    assert len({tuple(sorted(v.items())) for v in variants}) == 8


def test_optuna_accepts_the_encoded_space():
    settings = config()
    params = param_space(settings, build_rank_space(settings, LAYERS))
    searcher = OptunaSearch(space=params, metric="val_acc", mode="max", seed=0)
    suggestion = searcher.suggest("trial-1")
    plan = decode_trial(suggestion, settings, LAYERS)
    assert len(plan.rank_plan) == len(LAYERS) - 1
    searcher.on_trial_complete("trial-1", {"val_acc": 0.5})


def test_unknown_layers_in_the_config_are_refused():
    with pytest.raises(ConfigError, match=r"unknown layer\(s\) block9.conv1"):
        build_rank_space(config(decomposition={"layers": ["block9.conv1"]}), LAYERS)
    space = build_rank_space(config(decomposition={"layers": ["block2.conv2"]}), LAYERS)
    assert list(space.layer_choices) == ["block2.conv2"]


def test_bundled_digits_config_spells_out_the_defaults():
    bundled = build_config(SweepConfig, Path(__file__).parent.parent / "configs" / "digits.yaml")
    defaults = SweepConfig()
    assert bundled.max_t == defaults.max_t
    assert bundled.model_dump(exclude={"scheduler"}) == defaults.model_dump(exclude={"scheduler"})
    assert bundled.scheduler.model_dump(exclude={"max_t"}) == defaults.scheduler.model_dump(
        exclude={"max_t"}
    )
