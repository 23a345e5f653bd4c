"""What a model needs to know about its data: channels, classes and image size."""

from __future__ import annotations

from dataclasses import dataclass

from lightning_modules.data.base import ClassificationDataModule


@dataclass(frozen=True)
class DataShape:
    in_channels: int
    num_classes: int
    input_size: tuple[int, int]

    @classmethod
    def of(cls, datamodule: ClassificationDataModule) -> DataShape:
        """Known before setup(): every data module sets input_shape and num_classes early."""
        channels, height, width = datamodule.input_shape
        return cls(channels, datamodule.num_classes, (height, width))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.in_channels, *self.input_size)
