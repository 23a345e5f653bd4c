"""Batches cut from tensors that already sit on the training device: no DataLoader.

For a small in-memory data set (digits, MNIST, an npz) on a GPU, a DataLoader indexes one
example at a time on the host, collates, and copies every batch across PCIe: per-batch work
of the same order as a small net's training step, during which the GPU waits. Here the split
is copied to the device once, and a batch is one gather (shuffled) or one slice (in order).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor


class DeviceBatches:
    """An iterable of (images, labels) batches over tensors on one device, in the order a
    DataLoader with the same batch size, shuffle flag and generator would use: a fresh
    permutation per pass (the generator advances), last batch possibly short."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        # The permutation is drawn on the host, as DataLoader's RandomSampler does, so a seed
        # gives the same order whatever the device.
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        count = len(self.labels)
        if self.shuffle:
            order = torch.randperm(count, generator=self.generator).to(self.images.device)
            for start in range(0, count, self.batch_size):
                picked = order[start : start + self.batch_size]
                yield self.images[picked], self.labels[picked]
            return
        for start in range(0, count, self.batch_size):
            stop = start + self.batch_size
            yield self.images[start:stop], self.labels[start:stop]
