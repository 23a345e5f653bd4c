"""Reporting a multi-worker trial's epochs from one rank of its Ray Train run.

Every rank calls `ray.train.report` once per epoch (it is a barrier across the workers); Ray
Train keeps rank 0's metrics and the checkpoint rank 0 attaches (ray/train/v2/api/
train_fn_utils.py), and the trial relays both to Ray Tune (train_in_trial.py). The losses are
made global first (global_losses.py), so rank 0's report holds the whole epoch's figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import ray.train

from sweep.tuning.epoch_report import logged_epoch_metrics
from sweep.tuning.global_losses import GlobalLosses


class TrainChannel:
    """The ReportChannel of one rank of a multi-worker trial."""

    def __init__(self) -> None:
        self.reporting = ray.train.get_context().get_world_rank() == 0
        self.losses = GlobalLosses()

    def callbacks(self) -> Sequence[pl.Callback]:
        return (self.losses,)

    def epoch_metrics(self, trainer: pl.Trainer) -> dict[str, float]:
        return self.losses.merge(trainer, logged_epoch_metrics(trainer))

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        checkpoint = None
        if checkpoint_folder is not None and self.reporting:
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_folder)
        ray.train.report(metrics, checkpoint=checkpoint)
