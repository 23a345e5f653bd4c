"""Models as a user's code base would define them, for `model.factory` tests (Ray's workers
import them from the tests folder on PYTHONPATH)."""

from __future__ import annotations

from torch import nn


def linear_only(in_features: int = 64, num_classes: int = 10) -> nn.Module:
    """No convolution at all: nothing to decompose."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))


def depthwise_only(channels: int = 8, num_classes: int = 10) -> nn.Module:
    """Only a grouped (depthwise) conv besides the input conv: both stay dense."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    )


def not_a_module() -> str:
    return "a string"


def with_a_depthwise_conv(channels: int = 8, num_classes: int = 10) -> nn.Module:
    """One decomposable conv and a depthwise one, which stays dense (and is reported so)."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    )
