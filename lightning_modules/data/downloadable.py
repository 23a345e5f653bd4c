"""The shared shape of public data sets with an official train/test split (MNIST, CIFAR-10):
kept in a data folder, downloaded through torchvision when absent, validation carved from the
official train split by seed."""

from __future__ import annotations

from pathlib import Path

from .base import ClassificationDataModule, check_fraction
from .vision import data_home


class DownloadableDataModule(ClassificationDataModule):
    """`data_dir` defaults to $TUCKER_SWEEP_DATA or ~/.cache/tucker-sweep/data; `download`
    lets prepare_data() fetch what is missing. Subclasses say in `check_available` whether
    the data can be had, which runs at construction: a missing data set fails then, not in
    the middle of a sweep."""

    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        seed: int = 0,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        num_workers: int | None = None,
        download: bool = True,
    ) -> None:
        super().__init__(seed=seed, batch_size=batch_size, num_workers=num_workers)
        self.data_dir = data_home(data_dir)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.download = download
        self.check_available()

    def check_available(self) -> None:
        """Raise a DataError now if the data is neither here nor downloadable."""
        raise NotImplementedError
