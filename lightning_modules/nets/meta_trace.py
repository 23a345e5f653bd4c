"""Input sizes of a model's layers, found by tracing one image through a shape-only copy.

The copy lives on PyTorch's meta device: nothing is computed and the model is untouched, so
pricing a plan or analysing ranks costs no arithmetic.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
from torch import nn


def _record(
    sizes: dict[str, tuple[int, int]], name: str, _module: nn.Module, inputs: tuple, _output: object
) -> None:
    # A module called twice (shared weights) keeps the size of its first call.
    sizes.setdefault(name, (int(inputs[0].shape[-2]), int(inputs[0].shape[-1])))


def input_sizes(
    model: nn.Module, input_shape: tuple[int, int, int], wanted: type | tuple[type, ...]
) -> dict[str, tuple[int, int]]:
    """Input H x W of every submodule of type `wanted` that the forward pass calls, by name.
    `input_shape` is (C, H, W) of one image. ValueError (one line) when the input does not fit
    the model."""
    sizes: dict[str, tuple[int, int]] = {}
    shadow = copy.deepcopy(model).to("meta").eval()
    for name, module in shadow.named_modules():
        if isinstance(module, wanted):
            module.register_forward_hook(partial(_record, sizes, name))
    try:
        with torch.no_grad():
            shadow(torch.empty(1, *input_shape, device="meta"))
    except (RuntimeError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"input_shape {input_shape} does not fit the model: {first_line}"
        ) from None
    return sizes
