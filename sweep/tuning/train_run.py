"""One Ray Train run of a sweep (a multi-worker trial's attempt, or the baseline): the
TorchTrainer, and its folder on the sweep's storage, deleted once the run has ended.

Ray Train V2 is what `ray.train.torch.TorchTrainer` is in Ray 2.60 (RAY_TRAIN_V2_ENABLED
defaults to on, ray/train/v2/_internal/constants.py); its RunConfig, FailureConfig and
CheckpointConfig are ray.train's. A worker failure ends the run (max_failures=0, preemptions
too): the Tune trial around it then fails and Ray Tune retries it from its last checkpoint,
up to training.max_failures, as it retries a one-device trial. Recovering inside the run
instead would replay epochs that Tune counts as new iterations.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow.fs as pafs
import ray.train
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from sweep.config import SweepConfig
from sweep.errors import ConfigError
from sweep.sweep_files.store import SWEEP_FOLDER, filesystem
from sweep.tuning.train_workers import scaling_config

TRAIN_RUNS_FOLDER = "train_runs"


def train_runs_path(experiment_path: str) -> str:
    """Where a sweep's Train runs keep their checkpoints meanwhile: beside the sweep's files."""
    return f"{experiment_path.rstrip('/')}/{SWEEP_FOLDER}/{TRAIN_RUNS_FOLDER}"


def new_run_name(prefix: str) -> str:
    """A name no other run has: an attempt starts from Tune's checkpoint, never Train's."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def torch_trainer(
    config: SweepConfig,
    train_fn: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    storage_path: str,
    name: str,
    callbacks: Sequence[UserCallback] = (),
) -> TorchTrainer:
    """`train_fn(loop_config)` on resources.workers workers (Ray picks gloo or NCCL)."""
    if not issubclass(TorchTrainer, DataParallelTrainer):
        raise ConfigError(
            "resources.workers > 1 needs Ray Train V2, which RAY_TRAIN_V2_ENABLED=0 turns off"
        )
    return TorchTrainer(
        train_fn,
        train_loop_config=loop_config,
        scaling_config=scaling_config(config),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=0, max_preemption_failures=0),
            # Every checkpoint is kept until its reader deletes it: the relay to Tune.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=None),
            callbacks=list(callbacks),
        ),
    )


def delete_run(storage_path: str, name: str) -> None:
    """The run's folder, gone (what it held is Tune's now, or no longer needed)."""
    fs, root = filesystem(storage_path)
    with contextlib.suppress(OSError):  # never created, or already gone
        fs.delete_dir(f"{root}/{name}")


def delete_checkpoint(checkpoint: ray.train.Checkpoint) -> None:
    fs: pafs.FileSystem = checkpoint.filesystem
    with contextlib.suppress(OSError):
        fs.delete_dir(checkpoint.path)
