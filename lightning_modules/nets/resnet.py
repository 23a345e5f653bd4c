"""CIFAR-style ResNets (He et al. 2016, section 4.2): 6n+2 layers, widths 16/32/64."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from lightning_modules.nets.options import whole_number


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; a 1x1 conv + BN projects the shortcut when the
    shape changes (option B of the paper)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    bn=nn.BatchNorm2d(out_channels),
                )
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """`stem` conv, three stages of `blocks_per_stage` BasicBlocks (stride 1, 2, 2), global
    average pooling, linear classifier. Conv names read `stage2.block1.conv1`."""

    def __init__(
        self, in_channels: int, num_classes: int, blocks_per_stage: int, width: int = 16
    ) -> None:
        super().__init__()
        width = whole_number("width", width)
        blocks_per_stage = whole_number("blocks_per_stage", blocks_per_stage)
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(width),
                relu=nn.ReLU(inplace=True),
            )
        )
        channels = width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width), start=1):
            blocks = {}
            for index in range(1, blocks_per_stage + 1):
                stride = 2 if stage > 1 and index == 1 else 1
                blocks[f"block{index}"] = BasicBlock(channels, stage_width, stride)
                channels = stage_width
            self.add_module(f"stage{stage}", nn.Sequential(OrderedDict(blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.classifier(self.pool(x).flatten(1))
