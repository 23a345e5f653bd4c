"""The dense baseline of a sweep: trained briefly, it seeds the rank analysis (its trained
kernels), HOOI initialisation of the trials (its weights), and the report's comparison (its
per-epoch curve)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_modules.models import ModelCost
from lightning_modules.module import TuckerClassifier
from sweep.config import LearningRateRange, SweepConfig
from sweep.trainable import (
    REPORTED_METRICS,
    DataShape,
    classifier_options,
    datamodule_for,
    prepare_data_once_per_node,
)


def baseline_lr(config: SweepConfig) -> float:
    """The dense model's learning rate: the geometric middle of a searched range, the middle
    of a list."""
    lr = config.search.lr
    if isinstance(lr, LearningRateRange):
        return (lr.low * lr.high) ** 0.5 if lr.log else (lr.low + lr.high) / 2
    if isinstance(lr, list):
        return sorted(lr)[len(lr) // 2]
    return float(lr)


def baseline_epochs(config: SweepConfig) -> int:
    return config.decomposition.seed_epochs


class EpochHistory(pl.Callback):
    """Per-epoch metrics with the seconds since fit start (the trials' time_total_s)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._started = 0.0

    def on_train_start(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1,
               "trial_seconds": time.perf_counter() - self._started}  # fmt: skip
        row.update({key: float(metrics[key]) for key in REPORTED_METRICS if key in metrics})
        self.rows.append(row)


@dataclass
class BaselineResult:
    """A trained dense model (weights on the CPU) and how it got there."""

    state_dict: dict[str, torch.Tensor]
    hparams: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    cost: ModelCost | None = None

    @property
    def val_acc(self) -> float:
        return max((row.get("val_acc", float("nan")) for row in self.history), default=float("nan"))

    @property
    def epochs(self) -> int:
        return len(self.history)

    def classifier(self) -> TuckerClassifier:
        model = TuckerClassifier(**self.hparams)
        model.model.load_state_dict(self.state_dict)
        return model


def train_baseline(config: SweepConfig, data_shape: DataShape, epochs: int) -> BaselineResult:
    """Fit the dense model (GPU if this process has one). Runs in a Ray task during a sweep,
    in-process for `tucker-sweep seed`."""
    pl.seed_everything(config.training.seed, verbose=False)
    datamodule = datamodule_for(config)
    prepare_data_once_per_node(datamodule)
    hparams = classifier_options(config, data_shape, baseline_lr(config))
    hparams["max_epochs"] = epochs
    classifier = TuckerClassifier(**hparams)
    history = EpochHistory()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=1,
        callbacks=[history],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(classifier, datamodule=datamodule)
    state = {key: value.detach().cpu() for key, value in classifier.model.state_dict().items()}
    return BaselineResult(state, hparams, history.rows, classifier.cost)
