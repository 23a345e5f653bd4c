"""Reporting a trial's epochs from Lightning, with a checkpoint every k-th epoch and, at the last
epoch, the test accuracy of the best validation epoch: to Ray Tune from a one-device trial
(TUNE_CHANNEL), or through Ray Train from every rank of a multi-worker one (train_channel.py)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Protocol

import lightning.pytorch as pl
from ray import tune

from lightning_modules.evaluation import BestValidationWeights
from sweep.sweep_files.trial_files import CHECKPOINT_FILE
from sweep.tracking.names import EPOCH_METRICS, TEST_ACC_METRIC


def logged_epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The epoch's val_acc, val_loss, train_loss and train_acc as this process logged them."""
    return {
        key: float(trainer.callback_metrics[key])
        for key in EPOCH_METRICS
        if key in trainer.callback_metrics
    }


class ReportChannel(Protocol):
    """Where a trial's epochs go. `reporting`: whether this process's reports are the trial's
    (always on one device; rank 0 of a multi-worker trial)."""

    reporting: bool

    def callbacks(self) -> Sequence[pl.Callback]:
        """Callbacks the fit needs for this channel, placed before every other one."""
        ...

    def epoch_metrics(self, trainer: pl.Trainer) -> dict[str, float]:
        """The finished epoch's figures (called by every process at the same point)."""
        ...

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        """Report `metrics`, with the checkpoint in `checkpoint_folder` if any."""
        ...


class TuneChannel:
    """A one-device trial: the Tune session of this process."""

    reporting = True

    def callbacks(self) -> Sequence[pl.Callback]:
        return ()

    def epoch_metrics(self, trainer: pl.Trainer) -> dict[str, float]:
        return logged_epoch_metrics(trainer)

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        if checkpoint_folder is None:
            tune.report(metrics)
        else:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_folder))


TUNE_CHANNEL = TuneChannel()


class EpochReport(pl.Callback):
    """At the end of every training epoch (after its validation), report the epoch's metrics
    and `static_metrics` (the plan's cost: a multi-objective searcher reads it from every
    result) through `channel`, with a checkpoint on every `checkpoint_every`-th epoch and on
    the last. The last epoch's report also carries `test_acc`: the test-split accuracy of the
    weights `best` kept from the best validation epoch (a trial ASHA stops never measures it),
    measured where the report counts.

    Ray's TuneReportCheckpointCallback reports with a checkpoint at every report; making it
    skip epochs means overriding its private `_get_checkpoint`. These few lines over the public
    report APIs do the same without that. Put it after `best` among the Trainer's callbacks, so
    that `best` has seen the epoch first.
    """

    def __init__(
        self,
        best: BestValidationWeights,
        static_metrics: Mapping[str, float],
        checkpoint_every: int = 1,
        channel: ReportChannel = TUNE_CHANNEL,
    ) -> None:
        self.best = best
        self.static_metrics = dict(static_metrics)
        self.checkpoint_every = checkpoint_every
        self.channel = channel

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = self.channel.epoch_metrics(trainer)
        metrics.update(self.static_metrics)
        epoch = trainer.current_epoch + 1  # Tune's training_iteration of this report
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if last and self.channel.reporting:
            test_loader = trainer.datamodule.test_dataloader()
            metrics[TEST_ACC_METRIC] = self.best.evaluate_best(module, test_loader)
        if epoch % self.checkpoint_every and not last:
            self.channel.report(metrics, None)
            return
        with tempfile.TemporaryDirectory(prefix="tucker-sweep-ckpt-") as folder:
            # Every rank of a distributed fit takes part; Lightning writes the file on rank 0.
            trainer.save_checkpoint(os.path.join(folder, CHECKPOINT_FILE))
            self.channel.report(metrics, folder)
