"""The exported network as TorchScript: every Tucker layer pinned to one path, then traced and
checked against the eager network."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from lightning_modules.tucker import TuckerConv2d
from lightning_modules.tucker.autotune import cost_model_choice
from sweep.export.checks import ExportCheckError

OUTPUT_TOLERANCE = 1e-4  # traced vs eager logits (float32, same ops)


def fix_implementations(network: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Pin every `auto` Tucker layer to the cost model's path for `example`'s shape:
    `auto` dispatches in Python, which a trace would freeze at whatever it timed."""
    chosen: dict[str, str] = {}
    handles = []
    for name, module in network.named_modules():
        if not isinstance(module, TuckerConv2d):
            continue

        def pin(layer: TuckerConv2d, inputs: tuple, name: str = name) -> None:
            if layer.implementation == "auto":
                layer.implementation = cost_model_choice(layer.geometry, layer.ranks, inputs[0])
            chosen[name] = layer.implementation

        handles.append(module.register_forward_pre_hook(pin))
    try:
        with torch.no_grad():
            network(example)
    finally:
        for handle in handles:
            handle.remove()
    return chosen


def save_traced(network: nn.Module, example: torch.Tensor, check: torch.Tensor, path: Path) -> None:
    """Trace on `example`, check the traced network against the eager one on `check` (other
    inputs than it was traced on), and save it. ExportCheckError when they differ."""
    with torch.no_grad(), warnings.catch_warnings():
        # Tucker paths branch on the factors' shapes: constants of the layer, safe to freeze.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(network, example, check_trace=False)
        eager, scripted = network(check), traced(check)
    if not torch.allclose(eager, scripted, atol=OUTPUT_TOLERANCE, rtol=OUTPUT_TOLERANCE):
        difference = float((eager - scripted).abs().max())
        raise ExportCheckError(
            f"the traced model's outputs differ from the eager model's by up to {difference:.3g}"
        )
    traced.save(str(path))
