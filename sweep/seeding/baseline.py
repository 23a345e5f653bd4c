"""The dense baseline of a sweep, in two phases. Trained briefly (`decomposition.seed_epochs`),
it seeds the rank analysis (its trained kernels) and the trials' HOOI initialisation (its
weights). Trained on to as many epochs as a full trial (`max_t`), it is the dense reference
the report compares with: its per-epoch curve, its best validation accuracy, and the test
accuracy of its best validation epoch, measured once."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_modules.data import ClassificationDataModule, DataShape
from lightning_modules.evaluation import BestValidationWeights, accuracy
from lightning_modules.execution import ExecutionSetup
from lightning_modules.module import TuckerClassifier
from lightning_modules.nets import ModelCost
from lightning_modules.trainer import make_trainer
from sweep.builders import classifier_options, prepare_data_once_per_node, sweep_datamodule
from sweep.config import SearchRange, SweepConfig
from sweep.errors import TuckerSweepError, first_line
from sweep.tracking.names import EPOCH_METRICS, SECONDS_METRIC, TEST_ACC_METRIC


def baseline_lr(config: SweepConfig) -> float:
    """The dense model's learning rate: the geometric middle of a searched range, the middle
    of a list."""
    lr = config.search.lr
    if isinstance(lr, SearchRange):
        return (lr.low * lr.high) ** 0.5 if lr.log else (lr.low + lr.high) / 2
    if isinstance(lr, list):
        return sorted(lr)[len(lr) // 2]
    return float(lr)


def baseline_epochs(config: SweepConfig) -> int:
    return config.decomposition.seed_epochs


class EpochHistory(pl.Callback):
    """Per-epoch metrics with the seconds since training started (the trials' time_total_s),
    across fits: a later fit continues the numbering of epochs and seconds."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._started = 0.0

    def on_train_start(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        before = self.rows[-1][SECONDS_METRIC] if self.rows else 0.0
        self._started = time.perf_counter() - before

    def on_train_epoch_end(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": len(self.rows) + 1,
               SECONDS_METRIC: time.perf_counter() - self._started}  # fmt: skip
        row.update({key: float(metrics[key]) for key in EPOCH_METRICS if key in metrics})
        self.rows.append(row)


@dataclass
class BaselineResult:
    """A trained dense model (weights on the CPU) and how it got there."""

    state_dict: dict[str, torch.Tensor]  # at the end of the first phase: seed, HOOI init
    hparams: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)  # both phases
    cost: ModelCost | None = None
    test_acc: float | None = None  # of the best validation epoch, on the test split

    @property
    def val_acc(self) -> float:
        return max((row.get("val_acc", float("nan")) for row in self.history), default=float("nan"))

    @property
    def epochs(self) -> int:
        return len(self.history)

    def static_metrics(self) -> dict[str, float]:
        """params, flops and compression (1: it is the reference), and test_acc when measured,
        for its MLflow run."""
        assert self.cost is not None, "the baseline's cost is set when it is trained or loaded"
        metrics = {"params": self.cost.params, "flops": self.cost.flops, "compression": 1.0}
        if self.test_acc is not None:
            metrics[TEST_ACC_METRIC] = self.test_acc
        return metrics

    def classifier(self) -> TuckerClassifier:
        model = TuckerClassifier(**self.hparams)
        model.model.load_state_dict(self.state_dict)
        return model


def _fit(
    classifier: TuckerClassifier,
    datamodule: ClassificationDataModule,
    epochs: int,
    history: EpochHistory,
    execution: ExecutionSetup,
) -> BestValidationWeights:
    best = BestValidationWeights()
    trainer = make_trainer(epochs, callbacks=[history, best], execution=execution)
    trainer.fit(classifier, datamodule=datamodule)
    return best


def pretrained_baseline(
    config: SweepConfig, data_shape: DataShape, weights: dict[str, torch.Tensor]
) -> BaselineResult:
    """The user's trained model (model.checkpoint) as the dense reference: nothing trains;
    it is evaluated once on the validation and the test split (epoch 0 of its history), on a
    GPU if this process has one. Runs in a Ray task during a sweep."""
    datamodule = sweep_datamodule(config)
    prepare_data_once_per_node(datamodule)
    datamodule.setup("fit")
    hparams = classifier_options(config, data_shape, baseline_lr(config))
    classifier = TuckerClassifier(**hparams)
    classifier.model.load_state_dict(weights)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    classifier.to(device)
    val_acc = accuracy(classifier, datamodule.val_dataloader(), device)
    test_acc = accuracy(classifier, datamodule.test_dataloader(), device)
    history = [{"epoch": 0, "val_acc": val_acc, SECONDS_METRIC: 0.0}]
    return BaselineResult(weights, hparams, history, classifier.cost, test_acc)


def finetuned_reference(
    config: SweepConfig, data_shape: DataShape, weights: dict[str, torch.Tensor]
) -> BaselineResult:
    """The user's trained model (model.checkpoint) fine-tuned with a trial's budget: as many
    epochs as a trial (`training.finetune_epochs`), at the trials' learning rate range's
    geometric mean, on the same data; its test accuracy is that of its best validation epoch.
    Why: the trials fine-tune on the sweep's data, and given weights from other data would make
    compression look like an improvement. Runs in a Ray task during a sweep."""
    pl.seed_everything(config.training.seed, verbose=False)
    datamodule = sweep_datamodule(config)
    prepare_data_once_per_node(datamodule)
    hparams = classifier_options(config, data_shape, baseline_lr(config))
    hparams["max_epochs"] = config.max_t
    classifier = TuckerClassifier(**hparams)
    classifier.model.load_state_dict(weights)
    history = EpochHistory()
    best = _fit(classifier, datamodule, config.max_t, history, config.training.execution_setup())
    test_acc = best.evaluate_best(classifier, datamodule.test_dataloader())
    return BaselineResult(weights, hparams, history.rows, classifier.cost, test_acc)


def pretrained_references(
    config: SweepConfig, data_shape: DataShape, weights: dict[str, torch.Tensor]
) -> tuple[BaselineResult, BaselineResult]:
    """Both dense rows of a sweep from model.checkpoint: the given model as it is, and the
    given model fine-tuned with a trial's budget. One Ray task during a sweep."""
    return (
        pretrained_baseline(config, data_shape, weights),
        finetuned_reference(config, data_shape, weights),
    )


def train_baseline(
    config: SweepConfig, data_shape: DataShape, epochs: int, reference_epochs: int | None = None
) -> BaselineResult:
    """Fit the dense model for `epochs` (the seed), then on to `reference_epochs` in all (the
    reference), on a GPU if this process has one. The second phase starts from the first's
    weights with a schedule over its own epochs. Runs in a Ray task during a sweep,
    in-process for `tucker-sweep seed`."""
    pl.seed_everything(config.training.seed, verbose=False)
    datamodule = sweep_datamodule(config)
    prepare_data_once_per_node(datamodule)
    hparams = classifier_options(config, data_shape, baseline_lr(config))
    hparams["max_epochs"] = epochs
    classifier = TuckerClassifier(**hparams)
    history = EpochHistory()
    best = _fit(classifier, datamodule, epochs, history, config.training.execution_setup())
    seed_state = {key: value.detach().cpu() for key, value in classifier.model.state_dict().items()}
    remaining = (reference_epochs or epochs) - epochs
    if remaining > 0:
        reference = TuckerClassifier(**{**hparams, "max_epochs": remaining})
        reference.load_state_dict(classifier.state_dict())
        later_best = _fit(
            reference, datamodule, remaining, history, config.training.execution_setup()
        )
        if (later_best.best_score or 0.0) > (best.best_score or 0.0):
            best, classifier = later_best, reference
    test_acc = best.evaluate_best(classifier, datamodule.test_dataloader())
    return BaselineResult(seed_state, hparams, history.rows, classifier.cost, test_acc)


class CheckpointMismatchError(TuckerSweepError, ValueError):
    """A checkpoint that is not a dense model of the configured architecture."""


# What every Lightning checkpoint holds; without them, loading fails with a bare KeyError.
_LIGHTNING_KEYS = ("pytorch-lightning_version", "hyper_parameters", "state_dict")


def check_checkpoint_file(path: Path) -> None:
    """That `path` holds a Lightning checkpoint at all, said in one line if not."""
    if not path.is_file():
        raise CheckpointMismatchError(f"checkpoint not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # arbitrary bytes fail in many ways (EOF, IndexError, ...)
        raise CheckpointMismatchError(
            f"{path} is not a PyTorch checkpoint: torch.load cannot read it "
            f"({type(error).__name__})"
        ) from None
    if not isinstance(content, dict):
        raise CheckpointMismatchError(
            f"{path} holds a {type(content).__name__}, not a Lightning checkpoint (a dict of "
            "the model's hyperparameters and state_dict)"
        )
    missing = [key for key in _LIGHTNING_KEYS if key not in content]
    if missing:
        raise CheckpointMismatchError(
            f"{path} is not a Lightning checkpoint: it lacks {', '.join(missing)}"
        )


def baseline_from_checkpoint(path: Path, config: SweepConfig, shape: DataShape) -> BaselineResult:
    """A dense baseline from a TuckerClassifier checkpoint, checked against the config."""
    check_checkpoint_file(path)
    try:
        classifier = TuckerClassifier.load_from_checkpoint(path, map_location="cpu",
                                                           weights_only=True)  # fmt: skip
    except (KeyError, RuntimeError, TypeError, ValueError, pickle.UnpicklingError) as error:
        raise CheckpointMismatchError(
            f"{path} is not a tucker-sweep (TuckerClassifier) checkpoint: {first_line(error)}"
        ) from None
    hp = classifier.hparams
    if hp.rank_plan:
        raise CheckpointMismatchError(
            f"{path} holds a Tucker model ({len(hp.rank_plan)} decomposed layers): the seed "
            "needs a dense baseline"
        )
    wanted = (config.model.spec, shape.in_channels, shape.num_classes, list(shape.input_size))
    found = (hp.model_name, hp.in_channels, hp.num_classes, list(hp.input_size))
    if wanted != found or dict(hp.model_options) != dict(config.model.options):
        raise CheckpointMismatchError(
            f"{path} is a {found[0]} for {found[1]}-channel {found[3][0]}x{found[3][1]} inputs "
            f"and {found[2]} classes; the config asks for a {wanted[0]} for {wanted[1]}-channel "
            f"{wanted[3][0]}x{wanted[3][1]} inputs and {wanted[2]} classes"
        )
    state = {key: value.detach().cpu() for key, value in classifier.model.state_dict().items()}
    return BaselineResult(state, dict(hp), history=[], cost=classifier.cost)


def evaluate_baseline(
    baseline: BaselineResult, datamodule: ClassificationDataModule
) -> dict[str, float]:
    """Validation accuracy of the baseline's weights, one batch at a time: the whole split in
    one forward held every activation of every image at once (gigabytes at 224x224)."""
    classifier = baseline.classifier()
    return {"val_acc": accuracy(classifier, datamodule.val_dataloader())}
