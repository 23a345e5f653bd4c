"""Reporting a trial's epochs to Ray Tune from Lightning, with a checkpoint every k-th epoch and,
at the last epoch, the test accuracy of the best validation epoch."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

import lightning.pytorch as pl
from ray import tune

from lightning_modules.evaluation import BestValidationWeights
from sweep.sweep_files.trial_files import CHECKPOINT_FILE
from sweep.tracking.names import EPOCH_METRICS, TEST_ACC_METRIC


class EpochReport(pl.Callback):
    """At the end of every training epoch (after its validation), report the epoch's metrics
    and `static_metrics` (the plan's cost: a multi-objective searcher reads it from every
    result) to Tune, with a checkpoint on every `checkpoint_every`-th epoch and on the last.
    The last epoch's report also carries `test_acc`: the test-split accuracy of the weights
    `best` kept from the best validation epoch (a trial ASHA stops never measures it).

    Ray's TuneReportCheckpointCallback reports with a checkpoint at every report; making it
    skip epochs means overriding its private `_get_checkpoint`. These few lines over the public
    `tune.report` and `tune.Checkpoint` do the same without that. Put it after `best` among the
    Trainer's callbacks, so that `best` has seen the epoch first.
    """

    def __init__(
        self,
        best: BestValidationWeights,
        static_metrics: Mapping[str, float],
        checkpoint_every: int = 1,
    ) -> None:
        self.best = best
        self.static_metrics = dict(static_metrics)
        self.checkpoint_every = checkpoint_every

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {
            key: float(trainer.callback_metrics[key])
            for key in EPOCH_METRICS
            if key in trainer.callback_metrics
        }
        metrics.update(self.static_metrics)
        epoch = trainer.current_epoch + 1  # Tune's training_iteration of this report
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if last:
            test_loader = trainer.datamodule.test_dataloader()
            metrics[TEST_ACC_METRIC] = self.best.evaluate_best(module, test_loader)
        if epoch % self.checkpoint_every and not last:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="tucker-sweep-ckpt-") as folder:
            trainer.save_checkpoint(os.path.join(folder, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
