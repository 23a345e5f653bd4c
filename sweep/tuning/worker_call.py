"""A sweep function that fits the dense model (the baseline's), called on Ray Train's workers as
the ranks of one DDP fit instead of in one process: `function(config, *args)` runs on every
worker within `distributed_fits`, each with its share of the batch, and rank 0's return value
comes back. It reaches the caller through a Ray queue rather than the run's storage, so that
nothing is unpickled from files others may write (README, "Trust boundary")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray
import ray.train
from ray.util.queue import Queue

from lightning_modules.trainer import distributed_fits
from sweep.config import SweepConfig
from sweep.tuning.ray_ddp import RAY_TRAIN_DDP
from sweep.tuning.train_run import delete_run, new_run_name, torch_trainer
from sweep.tuning.train_workers import TRAIN_DRIVER_CPU, per_worker_config


def _worker(loop_config: dict[str, Any]) -> None:
    function, config, args = ray.get(loop_config["work"])
    with distributed_fits(RAY_TRAIN_DDP):
        value = function(per_worker_config(config), *args)
    if ray.train.get_context().get_world_rank() == 0:
        loop_config["queue"].put(value)


def _drive(
    config: SweepConfig, storage_path: str, name: str, function: Callable[..., Any], args: tuple
) -> Any:
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    # One object for the workers: the run's controller never unpickles it (train_in_trial.py).
    loop_config = {"work": ray.put((function, config, args)), "queue": queue}
    try:
        torch_trainer(config, _worker, loop_config, storage_path, name).fit()
        return queue.get(block=False)
    finally:
        delete_run(storage_path, name)


def call_on_workers(
    config: SweepConfig, storage_path: str, function: Callable[..., Any], *args: Any
) -> Any:
    """Rank 0's `function(config, *args)`. The run is driven from a Ray task, as a one-device
    baseline runs in one: the driver's stop signals stay its own (TorchTrainer.fit, called in
    a process's main thread, installs a SIGINT handler of its own)."""
    name = new_run_name(getattr(function, "__name__", "fit"))
    task = ray.remote(num_cpus=TRAIN_DRIVER_CPU)(_drive)
    return ray.get(task.remote(config, storage_path, name, function, args))
