"""A small MobileNetV2-style network for small images (Sandler et al. 2018): inverted residuals.

Most of its multiply-adds are in 1x1 convs (decomposable, as Tucker-2 with D = 1) and 3x3
depthwise convs (groups = channels: TuckerConv2d refuses them, conv_layers skips them, so they
stay dense whatever the plan). A Tucker 1x1 is two or three thin 1x1s in place of one, so this is
the kind of network where fewer FLOPs need not mean a faster model.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from lightning_modules.nets.options import whole_number


class InvertedResidual(nn.Module):
    """1x1 expand (to `expansion` x the input channels) + BN + ReLU6, 3x3 depthwise + BN + ReLU6,
    1x1 project + BN (linear: no activation, as in the paper); the input is added back when the
    shapes match (stride 1, same channels). With expansion 1 the expand conv is left out."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        # The paper's first block (expansion 1) has no expand conv and no activation before
        # its depthwise conv; identities stand in for the conv and its BN there.
        self.expands = expansion != 1
        self.expand: nn.Module = nn.Identity()
        self.bn1: nn.Module = nn.Identity()
        if self.expands:
            self.expand = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        # Not self.act(x) when there is no expand conv: the in-place ReLU6 would clip the
        # input that the residual adds back.
        out = self.act(self.bn1(self.expand(x))) if self.expands else x
        out = self.act(self.bn2(self.depthwise(out)))
        out = self.bn3(self.project(out))
        return x + out if self.residual else out


class MobileNetV2Small(nn.Module):
    """`stem` 3x3 conv + BN + ReLU6, three stages of inverted residuals, global average pooling,
    linear classifier. Stage 1: one block (width channels, expansion 1, stride 1); stages 2
    and 3: `blocks_per_stage` blocks each (2x and 4x width, `expansion`, the first with stride
    2). Two stride-2 stages, as in VGGSmall: an 8x8 digit is 2x2 at the end.

    Conv names read `stage2.block1.expand`, `.depthwise` (never decomposed), `.project`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 16,
        expansion: int = 4,
        blocks_per_stage: int = 2,
    ) -> None:
        super().__init__()
        width = whole_number("width", width)
        expansion = whole_number("expansion", expansion)
        blocks_per_stage = whole_number("blocks_per_stage", blocks_per_stage)
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(width),
                relu=nn.ReLU6(inplace=True),
            )
        )
        self.stage1 = nn.Sequential(OrderedDict(block1=InvertedResidual(width, width, 1, 1)))
        channels = width
        for stage, stage_width in ((2, 2 * width), (3, 4 * width)):
            blocks = {}
            for index in range(1, blocks_per_stage + 1):
                stride = 2 if index == 1 else 1
                blocks[f"block{index}"] = InvertedResidual(channels, stage_width, stride, expansion)
                channels = stage_width
            self.add_module(f"stage{stage}", nn.Sequential(OrderedDict(blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.classifier(self.pool(x).flatten(1))
