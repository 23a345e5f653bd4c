"""The Ray Tune function trainable: one trial = one Lightning fit of a Tucker CNN (on one
device here; as a DDP run of several Ray Train workers in multi_worker_trial.py, which runs
the same `fit_trial` on every rank).

Everything the trial needs arrives through `tune.with_parameters` (Ray's object store, so it
reaches every node): the sweep config, its rank space, the dense baseline's weights for HOOI
initialisation, and any extra Lightning callbacks the launcher was given. Trials report val_acc,
val_loss, train_loss and train_acc once per epoch (EpochReport), a trial that runs to max_t also
its test accuracy, and a restarted trial continues from its last checkpoint. Every report also
carries the plan's measured speed on the deployment device (seeding.deployment). Workers need no
MLflow access: the driver records everything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from ray import tune

from lightning_modules.data import DataShape
from lightning_modules.evaluation import BestValidationWeights
from lightning_modules.module import TuckerClassifier
from lightning_modules.trainer import make_trainer
from sweep.builders import classifier_options, prepare_data_once_per_node, sweep_datamodule
from sweep.config import SweepConfig
from sweep.seeding.deployment import trial_speed_metrics
from sweep.space import RankSpace, TrialPlan
from sweep.tuning.epoch_report import CHECKPOINT_FILE, TUNE_CHANNEL, EpochReport, ReportChannel

# Makes one Lightning callback for one attempt of one trial (see launch_sweep): on every rank
# of a multi-worker trial, where Ray Tune's session API is not available.
TrialCallbackFactory = Callable[[], pl.Callback]


@dataclass(frozen=True)
class TrialSetup:
    """Shared by every trial of a sweep (shipped once through the object store)."""

    config: SweepConfig
    space: RankSpace  # decodes a trial's sampled config into its rank plan
    data_shape: DataShape
    baseline_state: dict[str, torch.Tensor] | None  # dense weights for init="hooi"
    trial_callbacks: Sequence[TrialCallbackFactory] = field(default=())
    # Where multi-worker trials' Ray Train runs keep their checkpoints until Tune has them.
    train_runs: str | None = None


def build_trial_classifier(setup: TrialSetup, plan: TrialPlan) -> TuckerClassifier:
    options = classifier_options(setup.config, setup.data_shape, plan.lr)
    if plan.init == "hooi" and setup.baseline_state is not None:
        dense = TuckerClassifier(**options)
        dense.model.load_state_dict(setup.baseline_state)
        return TuckerClassifier.from_dense(dense, plan.rank_plan, init="hooi")
    # init "random", or no baseline to start from (decomposition.seed off): fresh weights.
    return TuckerClassifier(**options, rank_plan=plan.rank_plan)


def run_trial(trial_config: dict[str, Any], setup: TrialSetup) -> None:
    """The function trainable of one-device trials: resume from Tune's checkpoint if any."""
    fit_trial(trial_config, setup, tune.get_checkpoint(), TUNE_CHANNEL)


def fit_trial(
    trial_config: dict[str, Any],
    setup: TrialSetup,
    checkpoint: tune.Checkpoint | None,
    channel: ReportChannel,
) -> None:
    """Decode, build, fit (from `checkpoint` if given), reporting through `channel`: the whole
    trial on one device, or one rank's part of it within `distributed_fits`."""
    config = setup.config
    plan = setup.space.decode(trial_config)
    pl.seed_everything(config.training.seed, verbose=False)
    datamodule = sweep_datamodule(config)
    prepare_data_once_per_node(datamodule)
    classifier = build_trial_classifier(setup, plan)
    # Timed before training: speed depends on the plan's shapes, not on the weights, so every
    # trial (ASHA's stopped ones too) reports it from its first epoch on, as a searcher
    # minimising latency needs. Once per trial: where its reports count.
    speed = (
        trial_speed_metrics(config, setup.data_shape, classifier.model) if channel.reporting else {}
    )
    best = BestValidationWeights()
    static_metrics = {**classifier.cost_metrics(), **speed}
    report = EpochReport(best, static_metrics, config.training.checkpoint_every, channel)
    callbacks = [*channel.callbacks(), best, report, *(make() for make in setup.trial_callbacks)]
    trainer = make_trainer(
        config.max_t, callbacks=callbacks, execution=config.training.execution_setup()
    )
    if checkpoint is None:
        trainer.fit(classifier, datamodule=datamodule)
        return
    with checkpoint.as_directory() as directory:
        trainer.fit(
            classifier, datamodule=datamodule, ckpt_path=os.path.join(directory, CHECKPOINT_FILE)
        )
