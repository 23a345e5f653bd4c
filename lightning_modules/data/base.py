"""The interface every data module shares: seeded splits and DataLoaders built one way."""

from __future__ import annotations

import os
from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .device_batches import DeviceBatches
from .errors import InvalidDatasetError


def available_cpus() -> int:
    # The affinity mask, not os.cpu_count(): containers and Ray workers often see
    # every host core but may only use a few.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_num_workers(in_memory: bool) -> int:
    """0 for tensors already in memory, else min(4, cpus - 1) for per-item decoding."""
    # Indexing an in-memory tensor costs far less than starting a worker process
    # and shipping each batch back through shared memory; decoding and augmenting
    # images one by one (PIL) is what workers pay off for. One core is left to the
    # training loop itself.
    if in_memory:
        return 0
    return max(0, min(4, available_cpus() - 1))


def check_fraction(name: str, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise InvalidDatasetError(f"{name} must be between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def stratified_split(
    labels: np.ndarray, holdout_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with `holdout_size` held out, class proportions preserved."""
    indices = np.arange(len(labels))
    try:
        kept, held_out = train_test_split(
            indices, test_size=holdout_size, random_state=seed, stratify=labels
        )
    except ValueError as err:
        # sklearn's reason (e.g. a class with a single example) is the actionable part.
        raise InvalidDatasetError(
            f"cannot split {len(labels)} examples stratified by class: {err}"
        ) from err
    # A split is a set: sorted, it reads and compares plainly, and the order of
    # examples comes from the train loader's own seeded shuffle.
    return np.sort(kept), np.sort(held_out)


def split_sizes(total: int, fractions: Sequence[float]) -> list[int]:
    """Example counts for the given fractions of `total`, each at least 1."""
    return [max(1, round(fraction * total)) for fraction in fractions]


class ClassificationDataModule(pl.LightningDataModule):
    """An image-classification data module with a seeded train/val/test split.

    Subclasses set `name`, `num_classes` and `input_shape` (channels, height, width)
    before `setup()` and fill `train_set`, `val_set` and `test_set` in `setup()`.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    # Whether the examples sit in memory as tensors (no per-item decoding work).
    in_memory: bool = True
    # Batch in-memory splits on the training device (DeviceBatches) instead of through a
    # DataLoader: None decides by device (on for a GPU), True/False force it.
    batch_on_device: bool | None = None

    def __init__(self, *, seed: int, batch_size: int, num_workers: int | None) -> None:
        super().__init__()
        if batch_size < 1:
            raise InvalidDatasetError(f"batch_size must be at least 1, got {batch_size!r}")
        if num_workers is not None and num_workers < 0:
            raise InvalidDatasetError(f"num_workers must be 0 or more, got {num_workers!r}")
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.num_workers = (
            default_num_workers(self.in_memory) if num_workers is None else int(num_workers)
        )
        # Per-channel normalisation statistics, set by setup(): an exported model
        # needs the same normalisation in front of it.
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        # Which examples went where (indices into the data set's own order, the
        # official train set for datasets with an official test set), set by setup().
        self.split_indices: dict[str, np.ndarray] = {}
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _ensure_setup(self) -> None:
        # Lightning calls prepare_data() and setup() before asking for loaders; this
        # lets a notebook or an export check ask directly.
        if self.train_set is None:
            self.prepare_data()
            self.setup("fit")

    def train_dataloader(self) -> DataLoader:
        self._ensure_setup()
        # A fresh generator per call: the same seed gives the same batch order in
        # the first epoch, and it advances from epoch to epoch within a run.
        generator = torch.Generator().manual_seed(self.seed)
        return self._loader(self.train_set, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        self._ensure_setup()
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self._ensure_setup()
        return self._loader(self.test_set, shuffle=False)

    def val_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole validation split as (images N x C x H x W float32, labels N int64)."""
        self._ensure_setup()
        batches = list(self._loader(self.val_set, shuffle=False))
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    def _batch_device(self) -> torch.device | None:
        """Where to batch in-memory splits: the trainer's device when that is a GPU (or when
        forced), else None for a DataLoader."""
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        wanted = device.type == "cuda" if self.batch_on_device is None else self.batch_on_device
        return device if wanted else None

    def _loader(
        self, dataset: Dataset | None, *, shuffle: bool, generator: torch.Generator | None = None
    ) -> DataLoader | DeviceBatches:
        assert dataset is not None  # _ensure_setup() ran
        device = self._batch_device() if isinstance(dataset, TensorDataset) else None
        if device is not None:
            images, labels = (tensor.to(device) for tensor in dataset.tensors)
            return DeviceBatches(
                images, labels, self.batch_size, shuffle=shuffle, generator=generator
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            # Pinned pages only speed up host-to-GPU copies; without CUDA they cost memory.
            pin_memory=torch.cuda.is_available(),
            # Re-spawning workers every epoch would repeat their startup cost.
            persistent_workers=self.num_workers > 0,
        )
