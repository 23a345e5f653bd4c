"""One training run outside Ray: data module + model + Lightning Trainer, logged to MLflow."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger

from lightning_modules.data import ClassificationDataModule
from lightning_modules.module import TuckerClassifier
from lightning_modules.nets import build_model, uniform_plan
from lightning_modules.trainer import make_trainer
from lightning_modules.tucker import TuckerRanks
from sweep.builders import datamodule_for
from sweep.config import RankSpecConfig, TrainConfig
from sweep.errors import ConfigError
from sweep.tracking.client import tracking_client
from sweep.tracking.names import KIND_TAG


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports back."""

    val_acc: float
    val_loss: float
    params: int
    dense_params: int
    compression: float
    flops: int
    seconds: float
    epochs: int
    run_id: str
    experiment_id: str
    tracking_uri: str
    checkpoint_artifact: str | None  # path of the best checkpoint among the run's artifacts


def resolve_rank_plan(
    ranks: RankSpecConfig | None,
    model_name: str,
    model_options: dict[str, Any],
    input_shape: tuple[int, int, int],
    num_classes: int,
) -> dict[str, TuckerRanks] | dict[str, Any] | None:
    """A per-layer plan from a config's `ranks`: a single spec applies to every decomposable
    conv but the input conv; a mapping is used as given (validated by the model)."""
    if ranks is None or isinstance(ranks, dict):
        return ranks
    dense = build_model(model_name, input_shape[0], num_classes, **model_options)
    return uniform_plan(dense, ranks)


def classifier_for(config: TrainConfig, datamodule: ClassificationDataModule) -> TuckerClassifier:
    channels, height, width = datamodule.input_shape
    plan = resolve_rank_plan(
        config.ranks,
        config.model.spec,
        config.model.options,
        datamodule.input_shape,
        datamodule.num_classes,
    )
    return TuckerClassifier(
        model_name=config.model.spec,
        in_channels=channels,
        num_classes=datamodule.num_classes,
        input_size=(height, width),
        model_options=config.model.options,
        rank_plan=plan,
        optimizer=config.optimizer.name,
        lr=config.optimizer.lr,
        momentum=config.optimizer.momentum,
        weight_decay=config.optimizer.weight_decay,
        schedule=config.optimizer.schedule,
        max_epochs=config.epochs,
    )


def check_accelerator(accelerator: str, label: str) -> None:
    """A device this host lacks fails in one line, naming `label` (the flag or key), before
    any run exists: Lightning would only refuse it once the MLflow run had been created."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        if accelerator == "gpu" and torch.backends.mps.is_available():
            return  # Lightning's "gpu" means Apple's MPS there
        raise ConfigError(
            f"{label}: {accelerator} asked for, but torch finds no CUDA GPU on this host; "
            "use cpu or auto"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{label}: mps asked for, but torch finds no MPS device on this host")


def check_execution(config: TrainConfig) -> None:
    """The precision / compile / memory-format setup on the device `auto` resolves to here
    (an explicit accelerator was checked with the config)."""
    if config.accelerator != "auto":
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    problem = config.execution_setup().problem_on(device)
    if problem:
        raise ConfigError(f"{problem} (accelerator auto found no GPU on this host)")


def train_once(config: TrainConfig, progress_bar: bool = True) -> RunResult:
    """Train one dense or Tucker model and record it as an MLflow run (params, per-epoch
    metrics, cost figures, best checkpoint as an artifact)."""
    # MLflow keeps the checkpoint (log_model=True uploads it when fit ends); the local copy
    # only needs to outlive the fit.
    with tempfile.TemporaryDirectory(prefix="tucker-sweep-ckpt-") as checkpoint_dir:
        return _train(config, progress_bar, Path(checkpoint_dir))


def _train(config: TrainConfig, progress_bar: bool, checkpoint_dir: Path) -> RunResult:
    pl.seed_everything(config.seed, verbose=False)
    datamodule = datamodule_for(config.data, seed=config.seed, batch_size=config.batch_size)
    classifier = classifier_for(config, datamodule)
    tracking_uri = config.tracking.resolved_uri()
    # Probed once the data and model are known good: MLflow's logger would retry an
    # unreachable server for minutes, then fail with a paragraph of urllib3's text.
    tracking_client(tracking_uri)
    kind = "dense" if config.ranks is None else "tucker"
    logger = MLFlowLogger(
        experiment_name=config.tracking.experiment,
        tracking_uri=tracking_uri,
        run_name=config.run_name or f"train-{config.model.name}-{config.data.name}-{kind}",
        tags={KIND_TAG: f"train-{kind}"},
        log_model=True,  # the best checkpoint becomes an artifact of the run
    )
    checkpoint = ModelCheckpoint(
        dirpath=checkpoint_dir,
        monitor="val_acc",
        mode="max",
        filename="best-{epoch}",
    )
    trainer = make_trainer(
        config.epochs,
        callbacks=[checkpoint],
        logger=logger,
        accelerator=config.accelerator,
        execution=config.execution_setup(),
        progress_bar=progress_bar,
        checkpointing=True,
        sanity_val_steps=2,  # Lightning's default: a broken validation fails before training
        log_every_n_steps=1,
    )
    # The run comes into being here, once the Trainer accepted its settings: a Trainer that
    # refuses them must not leave a run RUNNING.
    logger.log_hyperparams(
        {
            "data": config.data.name,
            "seed": config.seed,
            "batch_size": config.batch_size,
            "epochs": config.epochs,
            "ranks": "dense" if config.ranks is None else str(config.ranks),
        }
    )
    started = time.perf_counter()
    trainer.fit(classifier, datamodule=datamodule)
    seconds = time.perf_counter() - started
    metrics = trainer.callback_metrics
    cost = classifier.cost
    logger.log_metrics({"wall_seconds": seconds}, step=trainer.current_epoch)
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    # MLFlowLogger files each checkpoint under a folder named after its file stem.
    artifact = f"{best.stem}/{best.name}" if best else None
    return RunResult(
        val_acc=float(checkpoint.best_model_score or metrics["val_acc"]),
        val_loss=float(metrics["val_loss"]),
        params=cost.params,
        dense_params=cost.dense_params,
        compression=cost.compression,
        flops=cost.flops,
        seconds=seconds,
        epochs=trainer.current_epoch,
        run_id=logger.run_id,
        experiment_id=logger.experiment_id,
        tracking_uri=tracking_uri,
        checkpoint_artifact=artifact,
    )
