"""Reporting a trial's epochs to Ray Tune from Lightning, with a checkpoint every k-th epoch."""

from __future__ import annotations

import os
import tempfile

import lightning.pytorch as pl
from ray import tune

from sweep.tracking.names import EPOCH_METRICS

CHECKPOINT_FILE = "checkpoint.ckpt"  # the Lightning checkpoint inside each Tune checkpoint


class EpochReport(pl.Callback):
    """At the end of every training epoch (after its validation), report the epoch's metrics
    to Tune, with a checkpoint on every `checkpoint_every`-th epoch and on the last.

    Ray's TuneReportCheckpointCallback does this with a checkpoint at every report; making it
    skip epochs means overriding its private `_get_checkpoint`. These few lines over the public
    `tune.report` and `tune.Checkpoint` do the same without that.
    """

    def __init__(self, checkpoint_every: int = 1) -> None:
        self.checkpoint_every = checkpoint_every

    def on_train_epoch_end(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {
            key: float(trainer.callback_metrics[key])
            for key in EPOCH_METRICS
            if key in trainer.callback_metrics
        }
        epoch = trainer.current_epoch + 1  # Tune's training_iteration of this report
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.checkpoint_every and not last:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="tucker-sweep-ckpt-") as folder:
            trainer.save_checkpoint(os.path.join(folder, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
