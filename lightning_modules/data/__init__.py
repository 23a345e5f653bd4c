"""LightningDataModules by name: digits (offline default), mnist, fashion_mnist, cifar10, npz,
image_folder (a folder of images per class, local or s3://, decoded per item).

    dm = make_datamodule("digits", seed=0, batch_size=64)
    dm.num_classes, dm.input_shape        # 10, (1, 8, 8): known before setup()
    trainer.fit(model, datamodule=dm)     # Lightning calls prepare_data() and setup()
    x_val, y_val = dm.val_tensors()       # the whole validation split as tensors

Every module splits train/val/test with its seed (stratified by class), shuffles
the train loader with a generator seeded the same way, and normalises with
statistics of the train split. mnist, fashion_mnist and cifar10 need torchvision
(the `vision` extra) to download; see their classes for where files go offline.
"""

from lightning_modules.data.base import ClassificationDataModule
from lightning_modules.data.cifar import CIFAR10DataModule
from lightning_modules.data.errors import (
    DataError,
    DatasetUnavailableError,
    DatasetWarning,
    InvalidDatasetError,
    TorchvisionUnavailableError,
    UnknownDatasetError,
    UnreadableImageError,
)
from lightning_modules.data.idx import read_idx
from lightning_modules.data.image_folder import ImageFolderDataModule
from lightning_modules.data.mnist import FashionMNISTDataModule, MNISTDataModule, read_mnist_idx
from lightning_modules.data.npz import NpzDataModule, load_npz
from lightning_modules.data.registry import DATAMODULES, DATASET_NAMES, make_datamodule
from lightning_modules.data.shape import DataShape
from lightning_modules.data.tensor_sets import ArrayDataModule, DigitsDataModule
from lightning_modules.data.vision import DATA_DIR_ENV, data_home

__all__ = [
    "DATAMODULES",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "ArrayDataModule",
    "CIFAR10DataModule",
    "ClassificationDataModule",
    "DataError",
    "DataShape",
    "DatasetUnavailableError",
    "DatasetWarning",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InvalidDatasetError",
    "MNISTDataModule",
    "NpzDataModule",
    "TorchvisionUnavailableError",
    "UnknownDatasetError",
    "UnreadableImageError",
    "data_home",
    "load_npz",
    "make_datamodule",
    "read_idx",
    "read_mnist_idx",
]
