"""ImageNet ResNet-18 and ResNet-50 layer shapes (He et al. 2016, table 1), as a user's model
factory: torchvision's architecture and conv names, written out because torchvision does not load
beside this torch. 20 and 53 convs; any weights (see `structured_weights`).

    model: {factory: "resnet_shapes:resnet50", options: {num_classes: 10}}
    # with PYTHONPATH=benchmarks
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # torchvision's v1.5: the stride on the 3x3 conv.
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.downsample(x))


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
    )


class ImageNetResNet(nn.Module):
    """conv1 7x7/2, max pool, layer1..layer4 (widths 64..512, stride 1, 2, 2, 2), average pool,
    fc: conv names read `layer3.2.conv2`, `layer2.0.downsample.0`."""

    def __init__(
        self,
        block: type[_Basic | _Bottleneck],
        blocks: list[int],
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        channels = 64
        for index, (width, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            layers = []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                layers.append(block(channels, width, stride))
                channels = width * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return ImageNetResNet(_Basic, [2, 2, 2, 2], num_classes, in_channels)


def resnet50(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return ImageNetResNet(_Bottleneck, [3, 4, 6, 3], num_classes, in_channels)


def structured_weights(model: nn.Module, decay: float = 1.0, seed: int = 0) -> nn.Module:
    """Give every conv a kernel whose mode spectra fall off as trained ones do (in place).

    Why: random initial weights have flat spectra, so every energy threshold asks for nearly
    full ranks, which is neither what a user's trained net looks like nor the case rank
    selection is for. Each mode of a random Gaussian kernel is scaled by i^-decay (i = 1, 2,
    ... along that mode): its i-th multilinear singular value then falls roughly as i^-decay.
    A rotation of each mode would change nothing the spectra, HOOI or the bound can see (all
    are invariant under orthogonal changes of basis per mode), so none is applied.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, nn.Conv2d):
                continue
            n, c, kh, kw = module.weight.shape
            kernel = torch.randn(n, c, kh * kw, generator=generator, dtype=torch.float64)
            out, in_, spatial = (_decay(size, decay) for size in (n, c, kh * kw))
            kernel *= out[:, None, None] * in_[None, :, None] * spatial[None, None, :]
            kernel *= module.weight.std() / kernel.std()  # the init's scale, for sane activations
            module.weight.copy_(kernel.reshape(n, c, kh, kw).to(module.weight.dtype))
    return model


def _decay(size: int, decay: float) -> Tensor:
    return torch.arange(1, size + 1, dtype=torch.float64) ** -decay
