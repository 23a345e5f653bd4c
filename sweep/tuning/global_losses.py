"""An epoch's losses over the examples of every rank of a DDP fit, not of one rank's shard.

The classifier logs val_loss and train_loss as plain tensors, which Lightning averages per
process: on a rank, the mean over the examples that rank saw (weighted by batch size). Summed
over the ranks with each rank's example count as weight, those means give the mean over
every example, which is what one device would have logged. (val_acc and train_acc are
torchmetrics, which sum their counts over the ranks themselves.) If the classifier's logging
syncs across ranks, each rank already holds the global mean and the weighting leaves it so.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

LOSSES = ("val_loss", "train_loss")


def _examples(batch: Any) -> int:
    _images, labels = batch
    return int(labels.shape[0])


class GlobalLosses(pl.Callback):
    """Counts each rank's examples per epoch; `merge` turns the epoch's logged losses into
    their means over all ranks. Every rank must call `merge` at the same point of the epoch:
    it is one all-reduce."""

    def __init__(self) -> None:
        self.counts = {"train_loss": 0, "val_loss": 0}

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.counts["train_loss"] = 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.counts["val_loss"] = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        self.counts["train_loss"] += _examples(batch)

    def on_validation_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.counts["val_loss"] += _examples(batch)

    def merge(self, trainer: pl.Trainer, metrics: dict[str, float]) -> dict[str, float]:
        """`metrics` (this rank's epoch figures) with each loss replaced by its global mean."""
        present = [key for key in LOSSES if key in metrics]
        if not present:
            return metrics
        # Per loss: the sum of loss x examples, and the examples; one all-reduce for all.
        sums: list[float] = []
        for key in present:
            sums += [metrics[key] * self.counts[key], float(self.counts[key])]
        local = torch.tensor(sums, dtype=torch.float64, device=trainer.strategy.root_device)
        total = trainer.strategy.reduce(local, reduce_op="sum").cpu().tolist()
        merged = dict(metrics)
        for index, key in enumerate(present):
            weighted, examples = total[2 * index], total[2 * index + 1]
            if examples > 0:
                merged[key] = weighted / examples
        return merged
