"""LightningDataModules by name: digits (offline default), mnist, fashion_mnist, cifar10, npz.

    dm = make_datamodule("digits", seed=0, batch_size=64)
    dm.num_classes, dm.input_shape        # 10, (1, 8, 8): known before setup()
    trainer.fit(model, datamodule=dm)     # Lightning calls prepare_data() and setup()
    x_val, y_val = dm.val_tensors()       # the whole validation split as tensors

Every module splits train/val/test with its seed (stratified by class), shuffles
the train loader with a generator seeded the same way, and normalises with
statistics of the train split. mnist, fashion_mnist and cifar10 need torchvision
(the `vision` extra) to download; see their classes for where files go offline.
"""

from __future__ import annotations

import inspect
from typing import Any

from .datasets.base import ClassificationDataModule
from .datasets.cifar import CIFAR10DataModule
from .datasets.errors import (
    DataError,
    DatasetUnavailableError,
    InvalidDatasetError,
    TorchvisionUnavailableError,
    UnknownDatasetError,
)
from .datasets.idx import read_idx
from .datasets.mnist import FashionMNISTDataModule, MNISTDataModule, read_mnist_idx
from .datasets.npz import NpzDataModule, load_npz
from .datasets.tensor_sets import ArrayDataModule, DigitsDataModule
from .datasets.vision import DATA_DIR_ENV, data_home

__all__ = [
    "DATAMODULES",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "ArrayDataModule",
    "CIFAR10DataModule",
    "ClassificationDataModule",
    "DataError",
    "DatasetUnavailableError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "InvalidDatasetError",
    "MNISTDataModule",
    "NpzDataModule",
    "TorchvisionUnavailableError",
    "UnknownDatasetError",
    "data_home",
    "load_npz",
    "make_datamodule",
    "read_idx",
    "read_mnist_idx",
]

DATAMODULES: dict[str, type[ClassificationDataModule]] = {
    "digits": DigitsDataModule,
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "npz": NpzDataModule,
}
DATASET_NAMES: tuple[str, ...] = tuple(DATAMODULES)


def make_datamodule(name: str, **options: Any) -> ClassificationDataModule:
    """The data module registered as `name`, built with `options`.

    Options common to all: seed, batch_size, val_fraction, num_workers; digits and
    npz also take test_fraction; npz needs path (and takes channels_last); mnist,
    fashion_mnist and cifar10 take data_dir and download. An option set to None
    counts as not given, so one config can carry options not every dataset takes.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in DATAMODULES:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}"
        )
    datamodule_class = DATAMODULES[key]
    given = {option: value for option, value in options.items() if value is not None}
    parameters = inspect.signature(datamodule_class).parameters
    unexpected = sorted(set(given) - set(parameters))
    if unexpected:
        raise InvalidDatasetError(
            f"dataset {key!r} does not take option(s) {', '.join(unexpected)}; "
            f"it takes {', '.join(parameters)}"
        )
    required = [
        option
        for option, parameter in parameters.items()
        if parameter.default is inspect.Parameter.empty and option not in given
    ]
    if required:
        raise InvalidDatasetError(f"dataset {key!r} needs option(s) {', '.join(required)}")
    return datamodule_class(**given)
