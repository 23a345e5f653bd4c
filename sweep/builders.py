"""From the service's configs to Lightning objects: the data module and the classifier's
arguments, built one way for `train`, the dense baseline, every trial and export."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock
from torch import Tensor, nn

from lightning_modules.data import ClassificationDataModule, DataShape, make_datamodule
from lightning_modules.nets import build_model
from lightning_modules.nets.pretrained import match_state_dict, read_state_dict
from sweep.config import DataConfig, SweepConfig
from sweep.errors import ConfigError, echo, first_line


def datamodule_for(data: DataConfig, *, seed: int, batch_size: int) -> ClassificationDataModule:
    """The configured data module, split with `seed`."""
    try:
        return make_datamodule(data.name, seed=seed, batch_size=batch_size, **data.options)
    except TypeError as error:  # an option of the wrong type, or one the config sets itself
        raise ConfigError(f"data.options {echo(data.options)}: {first_line(error)}") from None


def sweep_datamodule(config: SweepConfig) -> ClassificationDataModule:
    """The data module of a sweep: the same split for the baseline, every trial and export."""
    training = config.training
    return datamodule_for(config.data, seed=training.seed, batch_size=training.batch_size)


def dense_model(config: SweepConfig, shape: DataShape) -> nn.Module:
    """The configured network, dense and freshly initialised, for data of `shape`."""
    return build_model(
        config.model.spec, shape.in_channels, shape.num_classes, **config.model.options
    )


def checkpoint_weights(config: SweepConfig, model: nn.Module) -> dict[str, Tensor] | None:
    """The weights of model.checkpoint matched to `model` (one-line errors naming the key),
    or None without a checkpoint."""
    if config.model.checkpoint is None:
        return None
    weights = read_state_dict(config.model.checkpoint)
    return match_state_dict(model, weights, f"model.checkpoint {config.model.checkpoint}")


def prepare_data_once_per_node(datamodule: ClassificationDataModule) -> None:
    """Concurrent trials on one node share the download cache: the first one downloads,
    the others wait for it and then find the files."""
    lock_path = Path(tempfile.gettempdir()) / f"tucker-sweep-data-{datamodule.name}.lock"
    with FileLock(str(lock_path)):
        datamodule.prepare_data()


def classifier_options(config: SweepConfig, data_shape: DataShape, lr: float) -> dict[str, Any]:
    """TuckerClassifier arguments shared by the baseline and every trial of a sweep."""
    training = config.training
    return {
        "model_name": config.model.spec,
        "in_channels": data_shape.in_channels,
        "num_classes": data_shape.num_classes,
        "input_size": data_shape.input_size,
        "model_options": config.model.options,
        "optimizer": training.optimizer,
        "lr": lr,
        "momentum": training.momentum,
        "weight_decay": training.weight_decay,
        "schedule": training.schedule,
        "max_epochs": config.schedule_epochs,
    }
