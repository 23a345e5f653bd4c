"""The Ray Tune side of a sweep's settings: the rank space as a `param_space`, the searcher,
the scheduler (ASHA) and what Tune reserves for each trial.

Rank triples are Tune choices of their text form ("16x8x3", sweep.trial_params):

    mode per_layer: {"ranks.block2.conv1": choice(["8x4x2", "16x8x3"]), ..., "lr": ..., "init": ...}
    mode ratio:     {"ratio_out": choice([...]), "ratio_in": ..., "ratio_spatial": ..., ...}
    mode budget:    {"compression": loguniform(2, 30), "lr": ..., "init": ...}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm, Searcher

from sweep.config import SearchRange, SweepConfig
from sweep.space import RankSpace
from sweep.tracking.names import LATENCY_METRIC
from sweep.trial_params import (
    COMPRESSION_KEY,
    INIT_KEY,
    LR_KEY,
    RATIO_KEYS,
    TUNE_RANKS_PREFIX,
    encode_ranks,
)
from sweep.tuning.train_workers import TRAIN_DRIVER_CPU, is_multi_worker


def _categorical(values: Sequence[Any], grid: bool) -> Any:
    values = list(values)
    if len(values) == 1:
        return values[0]  # a constant is not a search dimension
    return tune.grid_search(values) if grid else tune.choice(values)


def _sampled(value: float | list[float] | SearchRange, grid: bool) -> Any:
    """A number, a list of choices, or a range (log-)uniformly sampled."""
    if isinstance(value, SearchRange):
        return (tune.loguniform if value.log else tune.uniform)(value.low, value.high)
    if isinstance(value, list):
        return _categorical(value, grid)
    return value


def param_space(config: SweepConfig, space: RankSpace) -> dict[str, Any]:
    """The Ray Tune `param_space` for the Tuner."""
    grid = config.search.algorithm == "grid"
    params: dict[str, Any] = {}
    if space.mode == "budget":
        targets = config.decomposition.compression
        if isinstance(targets, SearchRange) and space.budget is not None:
            targets = space.budget.searched_range(targets)
        params[COMPRESSION_KEY] = _sampled(targets, grid)
    elif space.mode == "ratio":
        for key, choices in zip(RATIO_KEYS, space.ratio_choices, strict=True):
            params[key] = _categorical(choices, grid)
    else:
        for name, choices in space.layer_choices.items():
            params[TUNE_RANKS_PREFIX + name] = _categorical(
                [encode_ranks(r) for r in choices], grid
            )
    params[LR_KEY] = _sampled(config.search.lr, grid)
    params[INIT_KEY] = _categorical(config.decomposition.init, grid)
    return params


def trial_count(config: SweepConfig, params: Mapping[str, Any]) -> int:
    """Trials a sweep creates: num_samples, times every grid dimension of `params`."""
    grid = math.prod(
        len(value["grid_search"])
        for value in params.values()
        if isinstance(value, dict) and "grid_search" in value
    )
    return config.search.num_samples * grid


def searcher(config: SweepConfig, max_concurrent: int | None = None) -> SearchAlgorithm | Searcher:
    """Random or grid sampling, or Optuna: single-objective on val_acc, or multi-objective
    on val_acc and a cost (the trials report both every epoch; Optuna reads a trial's last
    result, its TPE sampler handles several objectives). At most `max_concurrent` trials run
    at once (None: as many as their resources allow). The limit is set here rather than as
    TuneConfig(max_concurrent_trials), which Tune applies to a Searcher only: for the random
    and grid BasicVariantGenerator it logs a warning and ignores it (ray/tune/tune.py)."""
    if config.search.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch  # optuna: only when asked for

        objectives = config.search.objectives
        if len(objectives) == 1:
            search = OptunaSearch(metric="val_acc", mode="max", seed=config.search.seed)
        else:
            modes = ["max", *("min" for _ in objectives[1:])]
            # Each objective is a metric of every result; `latency` is the measured latency_ms.
            metrics = [LATENCY_METRIC if name == "latency" else name for name in objectives]
            search = OptunaSearch(metric=metrics, mode=modes, seed=config.search.seed)
        return search if max_concurrent is None else ConcurrencyLimiter(search, max_concurrent)
    return BasicVariantGenerator(
        random_state=config.search.seed, max_concurrent=max_concurrent or 0
    )


def scheduler(config: SweepConfig) -> TrialScheduler:
    if config.scheduler.name == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        metric=config.scheduler.metric,
        mode="min" if config.scheduler.metric == "val_loss" else "max",
        time_attr="training_iteration",
        max_t=config.max_t,
        grace_period=config.scheduler.grace_period,
        reduction_factor=config.scheduler.reduction_factor,
        brackets=config.scheduler.brackets,
    )


def trial_resources(config: SweepConfig) -> dict[str, float]:
    """What Tune reserves for a trial: its training's, or, for a multi-worker trial, its
    Train run's driver (the workers reserve their own: train_workers.py)."""
    if is_multi_worker(config):
        return {"cpu": TRAIN_DRIVER_CPU}
    resources = {"cpu": config.resources.cpu}
    if config.resources.gpu:
        resources["gpu"] = config.resources.gpu
    return resources
