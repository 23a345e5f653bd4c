"""The Ray Tune function trainable of multi-worker trials (resources.workers > 1): each attempt
is a Ray Train run of `resources.workers` DDP workers that all run the one-device trial's
`fit_trial` (trainable.py) as ranks of one fit. The trial itself trains nothing: it starts
the run from its Tune checkpoint, if any, and relays the run's reports (train_in_trial.py).
Rank 0 times the plan and reports; the driver's TrialRunsCallback logs to MLflow as for any
trial."""

from __future__ import annotations

import dataclasses
from typing import Any

from ray import tune

from lightning_modules.trainer import distributed_fits
from sweep.tuning.ray_ddp import RAY_TRAIN_DDP
from sweep.tuning.train_channel import TrainChannel
from sweep.tuning.train_in_trial import ReleasesTrainWorkers, TrainRunInTrial
from sweep.tuning.train_run import new_run_name
from sweep.tuning.train_workers import per_worker_config
from sweep.tuning.trainable import TrialSetup, fit_trial


def run_multi_worker_trial(trial_config: dict[str, Any], setup: TrialSetup) -> None:
    """One attempt of the trial, resumed from Tune's checkpoint if it has one."""
    assert setup.train_runs is not None, "the launcher sets where Train runs keep checkpoints"
    run = TrainRunInTrial(
        setup.config, setup.train_runs, new_run_name(tune.get_context().get_trial_id())
    )
    run.fit(
        train_trial_worker,
        {"trial_config": trial_config, "setup": setup, "checkpoint": tune.get_checkpoint()},
    )


# Tune builds the trainable's class with these bases (ray/tune/trainable/function_trainable.py,
# wrap_function; tune.with_parameters keeps them): its cleanup releases a run's workers.
run_multi_worker_trial.__mixins__ = (ReleasesTrainWorkers,)  # type: ignore[attr-defined]


def train_trial_worker(loop_config: dict[str, Any]) -> None:
    """Every rank: the trial's fit as one rank of the DDP run, on its share of each batch."""
    setup: TrialSetup = loop_config["setup"]
    setup = dataclasses.replace(setup, config=per_worker_config(setup.config))
    with distributed_fits(RAY_TRAIN_DDP):
        fit_trial(loop_config["trial_config"], setup, loop_config["checkpoint"], TrainChannel())
