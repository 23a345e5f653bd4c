"""Data modules whose whole data set fits in memory: arrays, scikit-learn's digits."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from .arrays import class_count, class_labels, images_to_nchw
from .base import ClassificationDataModule, check_fraction, split_sizes, stratified_split
from .errors import InvalidDatasetError


class Splits(NamedTuple):
    """Float32 N x C x H x W images and int64 labels of each split, not yet normalised."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of N x C x H x W images (float64)."""
    mean = images.mean(axis=(0, 2, 3), dtype=np.float64)
    std = images.std(axis=(0, 2, 3), dtype=np.float64)
    # A constant channel would divide by zero; leaving it unscaled is harmless.
    return mean, np.where(std > 0, std, 1.0)


class TensorDataModule(ClassificationDataModule):
    """Splits held in memory as TensorDatasets, normalised with train-split statistics."""

    in_memory = True

    def load_splits(self) -> Splits:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return  # the splits do not depend on the stage; build them once
        splits = self.load_splits()
        # Statistics from the training split only, so nothing of val/test leaks in.
        mean, std = channel_statistics(splits.x_train)
        self.mean = torch.from_numpy(mean).float()
        self.std = torch.from_numpy(std).float()
        # float32 statistics keep the arithmetic (and its temporaries) in float32.
        scale = (
            mean.astype(np.float32)[None, :, None, None],
            std.astype(np.float32)[None, :, None, None],
        )
        self.train_set = _tensor_dataset(splits.x_train, splits.y_train, *scale)
        self.val_set = _tensor_dataset(splits.x_val, splits.y_val, *scale)
        self.test_set = _tensor_dataset(splits.x_test, splits.y_test, *scale)

    def val_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation split's own tensors, without a copy: treat them as read-only."""
        self._ensure_setup()
        assert isinstance(self.val_set, TensorDataset)
        images, labels = self.val_set.tensors
        return images, labels


def _tensor_dataset(
    images: np.ndarray, labels: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> TensorDataset:
    normalised = (images - mean) / std
    return TensorDataset(torch.from_numpy(normalised), torch.from_numpy(labels))


class ArrayDataModule(TensorDataModule):
    """Images and integer labels given as arrays, split train/val/test stratified by class.

    Images may be (N,C,H,W), (N,H,W,C) or grayscale (N,H,W), uint8 (scaled to [0,1])
    or float. `val_fraction` and `test_fraction` are fractions of all N examples.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        name: str = "arrays",
        seed: int = 0,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        num_workers: int | None = None,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__(seed=seed, batch_size=batch_size, num_workers=num_workers)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise InvalidDatasetError(
                f"val_fraction + test_fraction must leave examples to train on, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        self.images = images_to_nchw(x, channels_last)
        self.labels = class_labels(y, len(self.images))
        if len(self.labels) == 0:
            raise InvalidDatasetError("the data set is empty: x and y hold no examples")
        self.name = name
        self.num_classes = class_count(self.labels)
        _, channels, height, width = self.images.shape
        self.input_shape = (channels, height, width)

    def load_splits(self) -> Splits:
        n_val, n_test = split_sizes(len(self.labels), (self.val_fraction, self.test_fraction))
        rest, test = stratified_split(self.labels, n_test, self.seed)
        train_in_rest, val_in_rest = stratified_split(self.labels[rest], n_val, self.seed)
        train, val = rest[train_in_rest], rest[val_in_rest]
        self.split_indices = {"train": train, "val": val, "test": test}
        return Splits(
            self.images[train],
            self.labels[train],
            self.images[val],
            self.labels[val],
            self.images[test],
            self.labels[test],
        )


class DigitsDataModule(ArrayDataModule):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes, no download)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        num_workers: int | None = None,
    ) -> None:
        digits = load_digits()
        super().__init__(
            digits.images,  # float64 (N, 8, 8), values 0..16; normalisation rescales them
            digits.target,
            name="digits",
            seed=seed,
            batch_size=batch_size,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            num_workers=num_workers,
        )
