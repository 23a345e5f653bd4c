"""The Ray Tune function trainable: one trial = one Lightning fit of a Tucker CNN.

Everything the trial needs arrives through `tune.with_parameters` (Ray's object store, so it
reaches every node): the sweep config, the model's conv layers, and the dense baseline's
weights for HOOI initialisation. Trials report val_acc, val_loss, train_loss and train_acc
once per epoch with a checkpoint (Ray's Lightning callback), and a restarted trial continues
from its last checkpoint. Workers need no MLflow access: the driver records everything.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from filelock import FileLock
from ray import tune
from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

from lightning_modules.data import ClassificationDataModule, make_datamodule
from lightning_modules.models import ConvLayer
from lightning_modules.module import TuckerClassifier
from sweep.config import SweepConfig
from sweep.space import TrialPlan, decode_trial

REPORTED_METRICS = ("val_acc", "val_loss", "train_loss", "train_acc")
CHECKPOINT_FILE = "checkpoint.ckpt"


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know about the data."""

    in_channels: int
    num_classes: int
    input_size: tuple[int, int]

    @classmethod
    def of(cls, datamodule: ClassificationDataModule) -> DataShape:
        channels, height, width = datamodule.input_shape
        return cls(channels, datamodule.num_classes, (height, width))


@dataclass(frozen=True)
class TrialSetup:
    """Shared by every trial of a sweep (shipped once through the object store)."""

    config: SweepConfig
    layers: tuple[ConvLayer, ...]
    data_shape: DataShape
    baseline_state: dict[str, torch.Tensor] | None  # dense weights for init="hooi"


def datamodule_for(config: SweepConfig) -> ClassificationDataModule:
    return make_datamodule(
        config.data.name,
        seed=config.training.seed,
        batch_size=config.training.batch_size,
        **config.data.options,
    )


def prepare_data_once_per_node(datamodule: ClassificationDataModule) -> None:
    """Concurrent trials on one node share the download cache: the first one downloads,
    the others wait for it and then find the files."""
    lock_path = Path(tempfile.gettempdir()) / f"tucker-sweep-data-{datamodule.name}.lock"
    with FileLock(str(lock_path)):
        datamodule.prepare_data()


def classifier_options(config: SweepConfig, data_shape: DataShape, lr: float) -> dict[str, Any]:
    """TuckerClassifier arguments shared by the baseline and every trial."""
    training = config.training
    return {
        "model_name": config.model.name,
        "in_channels": data_shape.in_channels,
        "num_classes": data_shape.num_classes,
        "input_size": data_shape.input_size,
        "model_options": config.model.options,
        "optimizer": training.optimizer,
        "lr": lr,
        "momentum": training.momentum,
        "weight_decay": training.weight_decay,
        "schedule": training.schedule,
        "max_epochs": config.stopping.max_epochs,
    }


def build_trial_classifier(setup: TrialSetup, plan: TrialPlan) -> TuckerClassifier:
    options = classifier_options(setup.config, setup.data_shape, plan.lr)
    if plan.init == "hooi" and setup.baseline_state is not None:
        dense = TuckerClassifier(**options)
        dense.model.load_state_dict(setup.baseline_state)
        return TuckerClassifier.from_dense(dense, plan.rank_plan, init="hooi")
    # init "random", or no baseline to start from (decomposition.seed off): fresh weights.
    return TuckerClassifier(**options, rank_plan=plan.rank_plan)


class EpochReportCallback(TuneReportCheckpointCallback):
    """Ray's Lightning callback (report every epoch, with a checkpoint) made to checkpoint only
    every `checkpoint_every`-th epoch and the last. It overrides Ray's `_get_checkpoint`, a
    private hook of the pinned Ray version (tests/test_sweep.py checks the checkpoint epochs),
    rather than re-implementing the reporting."""

    def __init__(self, checkpoint_every: int) -> None:
        super().__init__(
            metrics=list(REPORTED_METRICS), filename=CHECKPOINT_FILE, on="train_epoch_end"
        )
        self.checkpoint_every = checkpoint_every

    @contextlib.contextmanager
    def _get_checkpoint(self, trainer: pl.Trainer) -> Iterator[tune.Checkpoint | None]:
        epoch = trainer.current_epoch + 1  # Tune's training_iteration of this report
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.checkpoint_every and not last:
            yield None
            return
        with super()._get_checkpoint(trainer) as checkpoint:
            yield checkpoint


class InjectedFault(RuntimeError):
    """Raised on purpose by fault injection (resilience tests)."""


class FaultInjector(pl.Callback):
    """Makes a trial raise at the start of an epoch: on every attempt, or (transient) only on
    an attempt that started from scratch. A retry resumes from the checkpoint of an earlier
    epoch, which is how it is told from the first attempt on any node."""

    def __init__(self, epoch: int, every_attempt: bool, resumed: bool) -> None:
        self.epoch = epoch
        self.every_attempt = every_attempt
        self.resumed = resumed

    def on_train_epoch_start(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and (self.every_attempt or not self.resumed):
            raise InjectedFault(f"injected fault at epoch {self.epoch}")


class DelayedEpochs(pl.Callback):
    """Starts every training epoch with a pause of `seconds`: a slow device, for tests."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_epoch_start(self, _trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        time.sleep(self.seconds)


def _fault_injector(config: SweepConfig, resumed: bool) -> FaultInjector | None:
    faults = config.fault_injection
    if not (faults.transient or faults.permanent):
        return None
    trial_index = int(tune.get_context().get_trial_name().rsplit("_", 1)[-1])
    if trial_index not in (*faults.transient, *faults.permanent):
        return None
    return FaultInjector(faults.epoch, trial_index in faults.permanent, resumed)


def run_trial(trial_config: dict[str, Any], setup: TrialSetup) -> None:
    """The function trainable: decode, build, fit; resume from Tune's checkpoint if any."""
    config = setup.config
    plan = decode_trial(trial_config, config, setup.layers)
    pl.seed_everything(config.training.seed, verbose=False)
    datamodule = datamodule_for(config)
    prepare_data_once_per_node(datamodule)
    classifier = build_trial_classifier(setup, plan)
    callbacks: list[pl.Callback] = [EpochReportCallback(config.training.checkpoint_every)]
    checkpoint = tune.get_checkpoint()
    injector = _fault_injector(config, resumed=checkpoint is not None)
    if injector is not None:
        callbacks.append(injector)
    if config.fault_injection.epoch_delay_seconds:
        callbacks.append(DelayedEpochs(config.fault_injection.epoch_delay_seconds))
    trainer = pl.Trainer(
        max_epochs=config.max_t,
        accelerator="auto",  # the GPU Ray assigned (CUDA_VISIBLE_DEVICES), else the CPU
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,  # Tune owns checkpoints
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    if checkpoint is None:
        trainer.fit(classifier, datamodule=datamodule)
        return
    with checkpoint.as_directory() as directory:
        trainer.fit(
            classifier, datamodule=datamodule, ckpt_path=os.path.join(directory, CHECKPOINT_FILE)
        )
