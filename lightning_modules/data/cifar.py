"""CIFAR-10 through torchvision, with the standard crop + flip augmentation on train only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import split_sizes, stratified_split
from .downloadable import DownloadableDataModule
from .errors import DatasetUnavailableError, first_line
from .vision import DATA_DIR_ENV, import_torchvision

# torchvision's folder for the extracted archive inside data_dir.
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"


class _TransformedSubset(Dataset):
    """The examples of `base` at `indices`, each image passed through `transform`."""

    # One undecorated base shared by the train view (augmented) and the val view
    # (not): the 50,000 images are loaded and held once.
    def __init__(self, base: Any, indices: np.ndarray, transform: Callable) -> None:
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[int(self.indices[index])]
        return self.transform(image), label


def uint8_channel_statistics(images_nhwc: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std, on the [0, 1] scale, of uint8 N x H x W x C images."""
    # One channel at a time in float32: the whole train split in float64 would take
    # over a gigabyte.
    means, stds = [], []
    for channel in range(images_nhwc.shape[-1]):
        values = images_nhwc[..., channel].astype(np.float32) / 255.0
        means.append(float(values.mean()))
        stds.append(float(values.std()) or 1.0)
    return means, stds


class CIFAR10DataModule(DownloadableDataModule):
    """CIFAR-10: val carved from the official 50,000 train images by seed; test = official 10,000.

    Needs torchvision (pip install 'tucker-sweep[vision]'); fails at construction
    without it. Data lives in `<data_dir>/cifar-10-batches-py`, `data_dir`
    defaulting to $TUCKER_SWEEP_DATA or ~/.cache/tucker-sweep/data; `prepare_data()`
    downloads it when absent (`download=True`). Normalised per channel with
    statistics of the train split.
    """

    name = "cifar10"
    num_classes = 10
    input_shape = (3, 32, 32)
    in_memory = False  # PIL decoding and augmentation per image: workers pay off

    def check_available(self) -> None:
        # CIFAR-10 is read through torchvision whether or not it must be downloaded.
        self._torchvision = import_torchvision(alternative=f"or {self._where_to_put()}")

    def _where_to_put(self) -> str:
        return (
            f"put {CIFAR10_ARCHIVE} (or its extracted {CIFAR10_FOLDER} folder) into "
            f"{self.data_dir} (or point data_dir or ${DATA_DIR_ENV} at a folder holding it)"
        )

    def _dataset(self, *, train: bool, transform: Callable | None = None) -> Any:
        try:
            return self._torchvision.datasets.CIFAR10(
                root=str(self.data_dir), train=train, transform=transform, download=False
            )
        except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found or corrupted"
            # torchvision's own advice (download=True) is not this API's; say ours.
            folder = self.data_dir / CIFAR10_FOLDER
            download_hint = (
                "call prepare_data() to download them (remove a corrupt folder first), or "
                if self.download
                else ""
            )
            raise DatasetUnavailableError(
                f"CIFAR-10 files in {folder} are missing or corrupt; "
                + download_hint
                + self._where_to_put()
            ) from err

    def prepare_data(self) -> None:
        # Skipping a present folder avoids torchvision's md5 pass over 170 MB (and
        # its "already downloaded" print) on every run.
        if (self.data_dir / CIFAR10_FOLDER).is_dir():
            return
        if not self.download:
            raise DatasetUnavailableError(
                f"CIFAR-10 is not in {self.data_dir} (download=False); " + self._where_to_put()
            )
        try:
            self._torchvision.datasets.CIFAR10(root=str(self.data_dir), download=True)
        except (OSError, RuntimeError, ValueError) as err:
            raise DatasetUnavailableError(
                f"CIFAR-10 could not be downloaded into {self.data_dir} ({first_line(err)}); "
                + self._where_to_put()
            ) from err

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        transforms = self._torchvision.transforms
        official_train = self._dataset(train=True)
        labels = np.asarray(official_train.targets)
        (n_val,) = split_sizes(len(labels), (self.val_fraction,))
        train, val = stratified_split(labels, n_val, self.seed)
        self.split_indices = {"train": train, "val": val}
        mean, std = uint8_channel_statistics(official_train.data[train])
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)
        to_normalised_tensor = [transforms.ToTensor(), transforms.Normalize(mean, std)]
        evaluation = transforms.Compose(to_normalised_tensor)
        augmentation = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                *to_normalised_tensor,
            ]
        )
        self.train_set = _TransformedSubset(official_train, train, augmentation)
        self.val_set = _TransformedSubset(official_train, val, evaluation)
        self.test_set = self._dataset(train=False, transform=evaluation)
