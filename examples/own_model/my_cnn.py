"""A user's own CNN, as it would live in their code base: tucker-sweep knows nothing of it and
reaches it through `model.factory: my_cnn:build` (this folder on PYTHONPATH).

It has what real networks have beside plain 3x3 convs: a 1x1 conv (decomposed as Tucker-2,
D = 1), a depthwise conv (groups = channels: stays dense, listed as skipped) and a 5x5 stem.
"""

from __future__ import annotations

from torch import Tensor, nn


class MyCNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.body = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, groups=2 * width, bias=False),
            nn.Conv2d(2 * width, 2 * width, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(self.stem(x)))


def build(in_channels: int = 1, num_classes: int = 10, width: int = 32) -> MyCNN:
    """The factory tucker-sweep calls (with model.options as keyword arguments)."""
    return MyCNN(in_channels, num_classes, width)
