"""TuckerClassifier: the LightningModule that trains a dense or Tucker CNN."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.nets import build_model, decompose, model_cost, rank_plan_of
from lightning_modules.tucker import RankSpec

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss is NaN or infinite."""


class TuckerClassifier(pl.LightningModule):
    """Cross-entropy classifier around a model from lightning_modules.nets.

    Every constructor argument is saved as a hyper-parameter, the rank plan as resolved
    triples, so `load_from_checkpoint` rebuilds the same (dense or Tucker) architecture.
    Use `from_dense` to start a Tucker model from trained dense weights (HOOI).
    """

    def __init__(
        self,
        model_name: str = "vgg_small",
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: Sequence[int] = (8, 8),
        model_options: Mapping[str, Any] | None = None,
        rank_plan: Mapping[str, RankSpec] | None = None,
        optimizer: str = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        schedule: str = "cosine",
        max_epochs: int = 15,
        step_size: int = 10,
        gamma: float = 0.1,
        implementation: str = "auto",
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr}")
        self.model = build_model(model_name, in_channels, num_classes, **(model_options or {}))
        if rank_plan:
            # Architecture only: weights come from training or from a checkpoint.
            decompose(self.model, rank_plan, init="random", implementation=implementation)
        # Saved after resolution so that the checkpoint holds exact triples, not ratios.
        rank_plan = {name: list(ranks) for name, ranks in rank_plan_of(self.model).items()}
        input_size = list(input_size)
        model_options = dict(model_options or {})
        self.save_hyperparameters()
        self.train_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.cost = model_cost(self.model, (in_channels, *input_size))

    @classmethod
    def from_dense(
        cls,
        dense: TuckerClassifier,
        rank_plan: Mapping[str, RankSpec],
        init: str = "hooi",
        **overrides: Any,
    ) -> TuckerClassifier:
        """A Tucker classifier whose layers start from the dense classifier's trained weights
        (HOOI of each named conv; `init="random"` keeps only the non-decomposed weights).
        Hyper-parameters are the dense one's, with `overrides` (e.g. lr) applied."""
        hparams = {**dense.hparams, **overrides, "rank_plan": None}
        model = cls(**hparams)
        model.model.load_state_dict(dense.model.state_dict())
        errors = decompose(
            model.model, rank_plan, init=init, implementation=hparams.get("implementation", "auto")
        )
        resolved = {name: list(ranks) for name, ranks in rank_plan_of(model.model).items()}
        model.hparams["rank_plan"] = resolved
        model.cost = model_cost(model.model, (model.hparams.in_channels, *model.hparams.input_size))
        model.reconstruction_errors = errors
        return model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        images, labels = batch
        logits = self(images)
        return F.cross_entropy(logits, labels), logits, labels

    def training_step(self, batch: tuple[Tensor, Tensor], _batch_idx: int) -> Tensor:
        loss, logits, labels = self._step(batch)
        self.train_accuracy(logits, labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train_acc", self.train_accuracy, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # Checked once per epoch (not per step, which would sync a GPU every batch).
        loss = self.trainer.callback_metrics.get("train_loss")
        if loss is not None and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"train_loss is {float(loss)} at epoch {self.current_epoch}: training diverged "
                f"(lr={self.hparams.lr})"
            )

    def validation_step(self, batch: tuple[Tensor, Tensor], _batch_idx: int) -> None:
        loss, logits, labels = self._step(batch)
        self.val_accuracy(logits, labels)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val_acc", self.val_accuracy, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], _batch_idx: int) -> None:
        loss, logits, labels = self._step(batch)
        self.test_accuracy(logits, labels)
        self.log("test_loss", loss, on_step=False, on_epoch=True)
        self.log("test_acc", self.test_accuracy, on_step=False, on_epoch=True)

    def on_fit_start(self) -> None:
        # Static figures of the architecture, logged once (self.log is per-epoch only).
        for logger in self.loggers:
            logger.log_metrics(self.cost_metrics(), step=0)

    def cost_metrics(self) -> dict[str, float]:
        return {
            "params": float(self.cost.params),
            "flops": float(self.cost.flops),
            "compression": self.cost.compression,
        }

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                self.parameters(),
                lr=hp.lr,
                momentum=hp.momentum,
                weight_decay=hp.weight_decay,
                nesterov=hp.momentum > 0,
            )
        else:
            optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.max_epochs)
        elif hp.schedule == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, hp.step_size, hp.gamma)
        else:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}
