"""torchvision's classification models by name (`model.torchvision`), freshly initialised or with
their published weights read from torch hub's cache (`model.pretrained`).

Pretrained weights are built by torchvision's own builder, which knows each model's quirks
(DenseNet's renamed keys, GoogLeNet's and Inception's input transform and auxiliary heads),
once the file is known to be in the cache: torch.hub then reads it instead of downloading it.
Weights trained on another number of classes get a new head, freshly initialised: that is the
fine-tuning start a user asks for with their own data.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import ModuleType

from torch import nn

from lightning_modules.nets.optional import importing
from lightning_modules.nets.options import raised
from lightning_modules.nets.pretrained import PretrainedWeightsError
from lightning_modules.nets.user_models import UnknownModelError, pop_pretrained
from lightning_modules.nets.weight_caches import torch_hub_file

# Options of get_model that the config says another way.
_REFUSED = {"weights": "model.pretrained: true reads the DEFAULT weights from torch hub's cache"}


def from_torchvision(name: str, num_classes: int, options: dict[str, object]) -> nn.Module:
    """torchvision.models.get_model(name, **options) for `num_classes` (unless the options give
    it), freshly initialised; with `pretrained: True` among the options, the DEFAULT weights
    of `name` from torch hub's cache (never downloaded)."""
    label = f"model torchvision: {name}"
    options = dict(options)
    pretrained = pop_pretrained(options, label)
    for key, instead in _REFUSED.items():
        if key in options:
            raise UnknownModelError(f"{label}: option {key!r} is not passed on: {instead}")
    with importing("torchvision", label, extra="vision"):
        from torchvision import models
    options.setdefault("num_classes", num_classes)
    if not pretrained:
        try:
            return models.get_model(name, weights=None, **options)
        except Exception as error:  # unknown names and bad options, in torchvision's words
            raise UnknownModelError(f"{label}: {raised(error)}") from None
    return _pretrained(models, name, label, options)


def _pretrained(models: ModuleType, name: str, label: str, options: dict[str, object]) -> nn.Module:
    try:
        weights = models.get_model_weights(name).DEFAULT
    except Exception as error:  # an unknown name, or a builder without published weights
        raise UnknownModelError(f"{label}: {raised(error)}") from None
    cached = torch_hub_file(weights.url, f"the weights of {label} ({weights})")  # or one line
    categories = len(weights.meta["categories"])
    num_classes = options.pop("num_classes")
    try:
        with weights_only_loads():
            model = models.get_model(name, weights=weights, **options)
    except Exception as error:  # bad options, or a cached file that is not these weights
        raise UnknownModelError(
            f"{label} with its {weights} (cached at {cached}): {raised(error)}"
        ) from None
    if num_classes != categories:
        replace_heads(model, categories, num_classes, f"{label} ({weights})")
    return model


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """torch.load with weights_only=True inside, whatever the caller asks: torch.hub reads its
    cache with weights_only=False (unpickling whatever the file holds), and tucker-sweep never
    runs code from a weights file (pretrained.read_state_dict). torch reads this switch at every
    load; the old value comes back afterwards."""
    variable = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    before = os.environ.get(variable)
    os.environ[variable] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def replace_heads(model: nn.Module, categories: int, num_classes: int, what: str) -> list[str]:
    """Every Linear or Conv2d of `model` with `categories` outputs (the classifier, and an
    auxiliary classifier where one is kept) replaced, in place, by a freshly initialised one
    with `num_classes` outputs; their names. One line when there is none."""
    replaced = []
    for name, module in list(model.named_modules()):
        head = _resized(module, categories, num_classes)
        if head is None:
            continue
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, head)
        replaced.append(name)
    if not replaced:
        raise PretrainedWeightsError(
            f"{what}: found no layer with its {categories} outputs to turn into a "
            f"{num_classes}-class head"
        )
    return replaced


def _resized(module: nn.Module, categories: int, num_classes: int) -> nn.Module | None:
    """A fresh copy of `module` with `num_classes` outputs, if it is a head of `categories`."""
    if isinstance(module, nn.Linear) and module.out_features == categories:
        return nn.Linear(module.in_features, num_classes, bias=module.bias is not None)
    if isinstance(module, nn.Conv2d) and module.out_channels == categories and module.groups == 1:
        return nn.Conv2d(
            module.in_channels, num_classes, module.kernel_size, module.stride, module.padding,
            module.dilation, bias=module.bias is not None, padding_mode=module.padding_mode,
        )  # fmt: skip
    return None
