"""Built-in networks by name, as timm builds models: a factory from a name and a few options."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from lightning_modules.nets.resnet import CifarResNet
from lightning_modules.nets.vgg import VGGSmall


class UnknownModelError(ValueError):
    """A model name the factory does not know, or options its constructor refuses."""


MODELS: dict[str, Callable[..., nn.Module]] = {
    "vgg_small": VGGSmall,
    "resnet8": partial(CifarResNet, blocks_per_stage=1),
    "resnet20": partial(CifarResNet, blocks_per_stage=3),
    "resnet32": partial(CifarResNet, blocks_per_stage=5),
}


def build_model(name: str, in_channels: int, num_classes: int, **options: object) -> nn.Module:
    """A freshly initialised dense model by name (see MODELS); options go to its constructor
    (e.g. width)."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    try:
        return MODELS[name](in_channels=in_channels, num_classes=num_classes, **options)
    except TypeError as error:
        raise UnknownModelError(f"bad options {options} for model {name!r}: {error}") from None
