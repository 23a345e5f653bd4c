"""Held-out evaluation: the weights of the best validation epoch, kept while training, and the
accuracy of a model on a split it never trained or was selected on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu") -> float:
    """Micro-averaged accuracy of `model` (put in eval mode, then restored) over `loader`."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for images, labels in loader:
            predictions = model(images.to(device)).argmax(dim=1).cpu()
            correct += int((predictions == labels).sum())
            total += int(labels.numel())
    finally:
        model.train(was_training)
    return correct / total


class BestValidationWeights(pl.Callback):
    """Keeps a CPU copy of the model's weights at the epoch with the best `monitor` (val_acc;
    ties keep the earlier epoch). Its state travels in Lightning checkpoints, so a fit resumed
    from one still knows its best epoch."""

    def __init__(self, monitor: str = "val_acc") -> None:
        self.monitor = monitor
        self.best_score: float | None = None
        self.best_epoch: int | None = None  # 1-based
        self.best_state: dict[str, Tensor] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # After the epoch's validation (Lightning validates before this hook runs).
        score = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or score is None:
            return
        if self.best_score is None or float(score) > self.best_score:
            self.best_score = float(score)
            self.best_epoch = trainer.current_epoch + 1
            self.best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    def evaluate_best(self, module: pl.LightningModule, loader: Iterable) -> float:
        """Accuracy over `loader` of the best epoch's weights. The module gets its own weights
        back afterwards (swapped in place: a copy of a LightningModule would copy its Trainer)."""
        if self.best_state is None:
            raise RuntimeError("no validation epoch has been seen yet")
        current = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.best_state)
        try:
            return accuracy(module, loader, module.device)
        finally:
            module.load_state_dict(current)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = state_dict.get("best_epoch")
        self.best_state = state_dict.get("best_state")
