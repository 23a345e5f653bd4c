"""Built-in networks by name, as timm builds models: a factory from a name and a few options."""

from __future__ import annotations

import importlib
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


# A model given by the user rather than by name (ModelConfig builds these strings):
# "factory:package.module:callable" calls the callable with the options; "torchvision:NAME"
# is torchvision.models.get_model(NAME, weights=None, num_classes=..., **options).
FACTORY_PREFIX = "factory:"
TORCHVISION_PREFIX = "torchvision:"


def build_model(name: str, in_channels: int, num_classes: int, /, **options: object) -> nn.Module:
    """A freshly initialised dense model: by name (see MODELS; options go to its constructor,
    e.g. width), from a user's factory, or from torchvision (see FACTORY_PREFIX)."""
    if name.startswith(FACTORY_PREFIX):
        return _from_factory(name.removeprefix(FACTORY_PREFIX), options)
    if name.startswith(TORCHVISION_PREFIX):
        return _from_torchvision(name.removeprefix(TORCHVISION_PREFIX), num_classes, options)
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    try:
        return MODELS[name](in_channels=in_channels, num_classes=num_classes, **options)
    except TypeError as error:
        raise UnknownModelError(f"bad options {options} for model {name!r}: {error}") from None


def import_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable named "package.module:callable" (importable where the model is built: on
    a cluster, every Ray worker; see the README on runtime_env)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UnknownModelError(f"model factory {spec!r}: expected 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UnknownModelError(
            f"model factory {spec!r}: cannot import {module_name}: {error}"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UnknownModelError(
            f"model factory {spec!r}: {module_name} has no callable {attribute!r}"
        )
    return factory


def _from_factory(spec: str, options: dict[str, object]) -> nn.Module:
    factory = import_factory(spec)
    try:
        model = factory(**options)
    except TypeError as error:
        raise UnknownModelError(
            f"model factory {spec!r} refused options {options}: {error}"
        ) from None
    if not isinstance(model, nn.Module):
        raise UnknownModelError(
            f"model factory {spec!r} returned {type(model).__name__}, not a torch nn.Module"
        )
    return model


def _from_torchvision(name: str, num_classes: int, options: dict[str, object]) -> nn.Module:
    try:
        from torchvision import models
    except Exception as error:  # missing, or a build that does not load beside this torch
        raise UnknownModelError(
            f"model torchvision: {name} needs torchvision, which does not load here "
            f"({type(error).__name__}); pip install torchvision matching torch"
        ) from None
    try:
        return models.get_model(name, weights=None, num_classes=num_classes, **options)
    except (ValueError, TypeError) as error:
        raise UnknownModelError(f"model torchvision: {name}: {error}") from None
