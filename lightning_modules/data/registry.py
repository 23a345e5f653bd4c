"""The data modules by name: digits (offline default), mnist, fashion_mnist, cifar10, npz,
image_folder."""

from __future__ import annotations

import inspect
from typing import Any

from lightning_modules.data.base import ClassificationDataModule
from lightning_modules.data.cifar import CIFAR10DataModule
from lightning_modules.data.errors import InvalidDatasetError, UnknownDatasetError
from lightning_modules.data.image_folder import ImageFolderDataModule
from lightning_modules.data.mnist import FashionMNISTDataModule, MNISTDataModule
from lightning_modules.data.npz import NpzDataModule
from lightning_modules.data.tensor_sets import DigitsDataModule

DATAMODULES: dict[str, type[ClassificationDataModule]] = {
    "digits": DigitsDataModule,
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "npz": NpzDataModule,
    "image_folder": ImageFolderDataModule,
}
DATASET_NAMES: tuple[str, ...] = tuple(DATAMODULES)


def make_datamodule(name: str, **options: Any) -> ClassificationDataModule:
    """The data module registered as `name`, built with `options`.

    Options common to all: seed, batch_size, val_fraction, num_workers; digits and
    npz also take test_fraction; npz needs path (and takes channels_last); mnist,
    fashion_mnist and cifar10 take data_dir and download; image_folder needs root and
    image_size (see ImageFolderDataModule for the rest). An option set to None
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
