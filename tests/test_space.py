"""The Ray Tune search space over rank triples: encoding, feasibility, searchers."""

from pathlib import Path

import pytest
import torch
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import generate_variants
from torch import nn

from lightning_modules.nets import build_model, conv_layers, input_sizes
from lightning_modules.ranks import mode_spectra
from lightning_modules.tucker import TuckerConv2d, TuckerRanks, validate_ranks
from lightning_modules.tucker.cost import dense_flops, tucker_flops
from sweep.config import SweepConfig, build_config
from sweep.errors import ConfigError
from sweep.space import SeedData, build_rank_space, ratio_triples
from sweep.trial_params import TUNE_RANKS_PREFIX, decode_ranks, encode_ranks
from sweep.tuning.tune_space import param_space, searcher, trial_count

LAYERS = tuple(conv_layers(build_model("vgg_small", 1, 10, width=16)))


def config(**sections) -> SweepConfig:
    """A sweep config; mode per_layer unless the test says otherwise (budget, the default,
    needs a seed)."""
    decomposition = {"mode": "per_layer", **sections.pop("decomposition", {})}
    return SweepConfig.model_validate({"decomposition": decomposition, **sections})


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
    plan = space.decode(sampled)
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
    plan = space.decode({**params, "lr": 0.05, "init": "random"})
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
    space = build_rank_space(settings, LAYERS)
    params = param_space(settings, space)
    searcher = OptunaSearch(space=params, metric="val_acc", mode="max", seed=0)
    suggestion = searcher.suggest("trial-1")
    plan = space.decode(suggestion)
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


def _seed_data(model) -> SeedData:
    """Candidates and spectra as a seed gives them (weights of a fresh model will do here)."""
    spectra = {layer.name: mode_spectra(model.get_submodule(layer.name).weight)
               for layer in LAYERS[1:]}  # fmt: skip
    candidates = {name: [TuckerRanks(1, 1, 1)] for name in spectra}
    return SeedData(candidates=candidates, spectra=spectra)


def test_budget_mode_samples_a_target_and_allocates_ranks_that_meet_it():
    model = build_model("vgg_small", 1, 10, width=16)
    settings = config(decomposition={"mode": "budget", "compression": {"low": 2, "high": 20},
                                     "budget_metric": "flops"})  # fmt: skip
    sizes = input_sizes(model, (1, 8, 8), nn.Conv2d)
    space = build_rank_space(settings, LAYERS, _seed_data(model), sizes)
    assert space.mode == "budget" and space.size() is None
    params = param_space(settings, space)
    assert set(params) == {"compression", "lr", "init"}  # as small however deep the model
    for _, sampled in generate_variants(params):
        plan = space.decode(sampled)
        assert 2 <= plan.target_compression <= 20 and plan.estimated_error is not None
        assert set(plan.rank_plan) == {layer.name for layer in LAYERS[1:]}
        dense = sum(dense_flops(layer.geometry, sizes[layer.name]) for layer in LAYERS[1:])
        tucker = sum(tucker_flops(layer.geometry, plan.rank_plan[layer.name], sizes[layer.name])
                     for layer in LAYERS[1:])  # fmt: skip
        assert dense / tucker >= plan.target_compression * (1 - 1e-9)
    # Decoding is deterministic: the trainable and the MLflow record agree on the plan.
    fixed = {"compression": 7.0, "lr": 0.05, "init": "hooi"}
    assert space.decode(fixed) == space.decode(dict(fixed))
    # Grid search takes a list of targets; Optuna takes the range.
    grid = config(decomposition={"mode": "budget", "compression": [2.0, 8.0]},
                  search={"algorithm": "grid", "lr": [0.05]})  # fmt: skip
    grid_params = param_space(grid, build_rank_space(grid, LAYERS, _seed_data(model)))
    assert grid_params["compression"] == {"grid_search": [2.0, 8.0]}
    searcher = OptunaSearch(space=params, metric="val_acc", mode="max", seed=0)
    assert 2 <= space.decode(searcher.suggest("t")).target_compression <= 20


def test_budget_mode_needs_a_seed():
    with pytest.raises(ValueError, match="budget allocates ranks from the seed"):
        config(decomposition={"mode": "budget", "seed": False})
    with pytest.raises(ConfigError, match="needs a seed"):
        build_rank_space(config(decomposition={"mode": "budget"}), LAYERS, None)


def test_multi_objective_search_tells_optuna_accuracy_and_cost():
    objectives = {"algorithm": "optuna", "objectives": ["val_acc", "params"]}
    settings = config(decomposition={"mode": "ratio"}, search=objectives)
    optuna_search = searcher(settings)
    space = build_rank_space(settings, LAYERS)
    optuna_search.set_search_properties(None, None, param_space(settings, space))
    for index in range(3):
        trial_id = f"t{index}"
        assert space.decode(optuna_search.suggest(trial_id)).rank_plan
        # What a trial's last result carries (EpochReport adds the plan's cost to each one).
        optuna_search.on_trial_complete(trial_id, {"val_acc": 0.5 + index / 10, "params": 1e5})
    study = optuna_search._ot_study  # Ray keeps the Optuna study private; only a test reads it
    assert [trial.values for trial in study.trials] == [[0.5, 1e5], [0.6, 1e5], [0.7, 1e5]]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"objectives": ["val_acc", "params"]}, "needs search.algorithm: optuna"),
        ({"algorithm": "optuna", "objectives": ["params"]}, "first objective must be val_acc"),
        ({"algorithm": "optuna", "objectives": ["val_acc", "params", "flops"]}, "at most one"),
    ],
)
def test_objectives_that_cannot_run_are_refused(search, message):
    with pytest.raises(ValueError, match=message):
        config(search=search)
