"""A VGG-style network for small images (8x8 digits up to 32x32 CIFAR)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from lightning_modules.nets.options import fraction, whole_number


def _conv_bn_relu(in_channels: int, out_channels: int, index: int) -> list[tuple[str, nn.Module]]:
    return [
        (f"conv{index}", nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)),
        (f"bn{index}", nn.BatchNorm2d(out_channels)),
        (f"relu{index}", nn.ReLU(inplace=True)),
    ]


class VGGSmall(nn.Module):
    """Three blocks of two 3x3 conv-BN-ReLU layers (width, 2x width, 4x width), 2x2 max-pool
    after the first two blocks, global average pooling and a linear classifier.

    Two pools, not three: an 8x8 digit is 2x2 after them, and the global pool handles any
    larger input. Conv names read `block2.conv1` in rank plans and reports.
    """

    def __init__(
        self, in_channels: int, num_classes: int, width: int = 32, dropout: float = 0.0
    ) -> None:
        super().__init__()
        width = whole_number("width", width)
        widths = (width, 2 * width, 4 * width)
        channels = in_channels
        for block, out_channels in enumerate(widths, start=1):
            layers = _conv_bn_relu(channels, out_channels, 1) + _conv_bn_relu(
                out_channels, out_channels, 2
            )
            if block < len(widths):
                layers.append(("pool", nn.MaxPool2d(2)))
            self.add_module(f"block{block}", nn.Sequential(OrderedDict(layers)))
            channels = out_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(fraction("dropout", dropout))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.classifier(self.dropout(self.pool(x).flatten(1)))
