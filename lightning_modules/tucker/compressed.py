"""A compressed model as a file its owner can load with their own model code: the model's
`state_dict` with the chosen convs as TuckerConv2d, and which convs those are.

    model = load_compressed(my_factory, "compressed.pt")    # or an nn.Module instance

needs only torch, the user's model code and this package's TuckerConv2d: the file says which
convs to replace and with which ranks, the state_dict holds every weight.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from lightning_modules.tucker.layer import TuckerConv2d

COMPRESSED_FORMAT = "tucker-sweep-compressed/1"


def tucker_layers(model: nn.Module) -> dict[str, list[int]]:
    """Name -> ranks [N', C', D'] of every TuckerConv2d in `model`."""
    return {
        name: list(module.ranks)
        for name, module in model.named_modules()
        if isinstance(module, TuckerConv2d)
    }


def save_compressed(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write `model` (a user's network with some convs replaced by TuckerConv2d) for
    load_compressed: plain tensors, lists and strings only, so weights_only loading works."""
    payload = {
        "format": COMPRESSED_FORMAT,
        "tucker_layers": tucker_layers(model),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    torch.save(payload, path)


def _replace(model: nn.Module, name: str, ranks: list[int]) -> None:
    conv = model.get_submodule(name)
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"{name} is a {type(conv).__name__} in this model, not an nn.Conv2d")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, TuckerConv2d.from_conv(conv, ranks, init="random"))


def load_compressed(
    factory_or_module: Callable[[], nn.Module] | nn.Module, path: str | os.PathLike[str]
) -> nn.Module:
    """The user's model (a fresh one from `factory_or_module()`, or the module given, changed
    in place) with the convs the file names replaced by TuckerConv2d and every weight loaded."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != COMPRESSED_FORMAT:
        raise ValueError(f"{path} is not a tucker-sweep compressed model ({COMPRESSED_FORMAT})")
    model = factory_or_module if isinstance(factory_or_module, nn.Module) else factory_or_module()
    for name, ranks in payload["tucker_layers"].items():
        _replace(model, name, ranks)
    model.load_state_dict(payload["state_dict"])
    return model
