"""What a multi-worker fit (resources.workers > 1) asks of Ray, and what each worker trains on.

Such a fit is a Ray Train run: TorchTrainer workers, each with `resources.cpu` CPUs and
`resources.gpu` GPUs in a placement group of their own, driven by a light process (the Tune
trial, or the baseline's task) that holds TRAIN_DRIVER_CPU. Ray Tune only sees that driver's
resources, so it is told how many trials fit at once: more drivers than that would only wait
for workers ("Set max_concurrent_trials to limit the number of Ray Train driver processes",
Ray's Train + Tune guide, doc/source/train/user-guides/hyperparameter-optimization.rst).

training.batch_size stays what one optimizer step sees: each of N workers loads
batch_size / N examples, so the same sweep with another worker count optimises the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import ray.train

from sweep.config import SweepConfig
from sweep.errors import ConfigError

# The driver of a Train run launches it and relays its reports; it trains nothing. A fraction
# leaves whole CPUs to the workers (a 2-core machine runs two 0.9-CPU workers beside it).
TRAIN_DRIVER_CPU = 0.1


def is_multi_worker(config: SweepConfig) -> bool:
    return config.resources.workers > 1


def check_worker_split(config: SweepConfig) -> None:
    """The batch splits evenly over the workers, or ConfigError in one line."""
    workers, batch = config.resources.workers, config.training.batch_size
    if batch % workers:
        raise ConfigError(
            f"training.batch_size: {batch} does not split over resources.workers: {workers} "
            "(each worker loads batch_size / workers examples a step); give a multiple of "
            f"{workers}"
        )


def per_worker_config(config: SweepConfig) -> SweepConfig:
    """The config one worker trains with: its share of each batch."""
    training = config.training.model_copy(
        update={"batch_size": config.training.batch_size // config.resources.workers}
    )
    return config.model_copy(update={"training": training})


def scaling_config(config: SweepConfig) -> ray.train.ScalingConfig:
    resources = config.resources
    per_worker = {"CPU": resources.cpu}
    if resources.gpu:
        per_worker["GPU"] = resources.gpu
    return ray.train.ScalingConfig(
        num_workers=resources.workers, use_gpu=resources.gpu > 0, resources_per_worker=per_worker
    )


def fit_footprint(config: SweepConfig) -> dict[str, float]:
    """CPUs and GPUs one multi-worker fit holds in all: its workers and its driver."""
    resources = config.resources
    return {
        "CPU": resources.workers * resources.cpu + TRAIN_DRIVER_CPU,
        "GPU": resources.workers * resources.gpu,
    }


def fits_at_once(config: SweepConfig, cluster: Mapping[str, float]) -> int:
    """How many multi-worker trials the cluster's resources hold side by side (at least 1)."""
    counts = [
        math.floor(cluster.get(name, 0.0) / needed + 1e-9)
        for name, needed in fit_footprint(config).items()
        if needed > 0
    ]
    return max(1, min(counts))


def concurrent_trials(config: SweepConfig) -> int | None:
    """Tune's max_concurrent_trials: the configured one, else for multi-worker trials as many
    as the connected cluster holds (None: Tune's own limit, by the trials' resources)."""
    if config.search.max_concurrent_trials is not None or not is_multi_worker(config):
        return config.search.max_concurrent_trials
    return fits_at_once(config, ray.cluster_resources())
