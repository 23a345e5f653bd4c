"""Built-in networks by name, as timm builds models: a factory from a name and a few options."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import psutil
import torch
from torch import nn

from lightning_modules.nets.mobilenet import MobileNetV2Small
from lightning_modules.nets.options import echo, one_line
from lightning_modules.nets.resnet import CifarResNet
from lightning_modules.nets.timm_models import from_timm
from lightning_modules.nets.torchvision_models import from_torchvision
from lightning_modules.nets.user_models import UnknownModelError, from_factory
from lightning_modules.nets.vgg import VGGSmall

__all__ = [
    "FACTORY_PREFIX",
    "MODELS",
    "TIMM_PREFIX",
    "TORCHVISION_PREFIX",
    "UnknownModelError",
    "build_model",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "vgg_small": VGGSmall,
    "resnet8": partial(CifarResNet, blocks_per_stage=1),
    "resnet20": partial(CifarResNet, blocks_per_stage=3),
    "resnet32": partial(CifarResNet, blocks_per_stage=5),
    "mobilenet_v2_small": MobileNetV2Small,
}


# A model given by the user rather than by name (ModelConfig builds these strings):
# "factory:package.module:callable" calls the callable with the options; "torchvision:NAME"
# is torchvision.models.get_model(NAME, weights=None, num_classes=..., **options); "timm:NAME"
# is timm.create_model(NAME, num_classes=..., in_chans=..., **options). For the last two, the
# option `pretrained: True` starts from the published weights, read from the local caches only.
FACTORY_PREFIX = "factory:"
TORCHVISION_PREFIX = "torchvision:"
TIMM_PREFIX = "timm:"


def build_model(name: str, in_channels: int, num_classes: int, /, **options: object) -> nn.Module:
    """A dense model, freshly initialised: by name (see MODELS; options go to its constructor,
    e.g. width), from a user's factory, from torchvision or from timm (see FACTORY_PREFIX;
    these two can start from their published weights instead)."""
    if name.startswith(FACTORY_PREFIX):
        return from_factory(name.removeprefix(FACTORY_PREFIX), options)
    if name.startswith(TORCHVISION_PREFIX):
        return from_torchvision(name.removeprefix(TORCHVISION_PREFIX), num_classes, options)
    if name.startswith(TIMM_PREFIX):
        return from_timm(name.removeprefix(TIMM_PREFIX), in_channels, num_classes, options)
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {echo(name)}; known models: {', '.join(MODELS)}")
    make = partial(MODELS[name], in_channels=in_channels, num_classes=num_classes, **options)
    try:
        _check_fits_in_memory(make, name)
        return make()
    except (TypeError, ValueError) as error:  # the constructors' own checks say what is wrong
        raise UnknownModelError(
            f"bad options {echo(options)} for model {name!r}: {one_line(error)}"
        ) from None


def _check_fits_in_memory(make: Callable[[], nn.Module], name: str) -> None:
    """Refuse a model whose weights alone exceed the memory available, before allocating them:
    on Linux a huge allocation succeeds lazily, and initialising it gets the process killed.
    A built-in is cheap to build once more on the meta device (shapes only)."""
    with torch.device("meta"):
        shapes = make()
    tensors = [*shapes.parameters(), *shapes.buffers()]
    needed = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    available = psutil.virtual_memory().available
    if needed > available:
        raise ValueError(
            f"its weights alone need {needed / 2**30:,.1f} GiB, and this host has "
            f"{available / 2**30:,.1f} GiB of memory available"
        )
