"""The exported network as TorchScript: the inference form (plain torch modules, no dispatch
left to freeze), traced and checked against the eager network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sweep.export.checks import ExportCheckError

OUTPUT_TOLERANCE = 1e-4  # traced vs eager logits (float32, same ops)


def trace(network: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """`network` traced on `example`: an inference form has no Python branching for the trace
    to freeze, so the trace holds for any batch size."""
    with torch.no_grad():
        return torch.jit.trace(network.eval(), example, check_trace=False)


def save_traced(network: nn.Module, example: torch.Tensor, check: torch.Tensor, path: Path) -> None:
    """Trace on `example`, check the traced network against the eager one on `check` (other
    inputs than it was traced on), and save it. ExportCheckError when they differ."""
    traced = trace(network, example)
    with torch.no_grad():
        eager, scripted = network(check), traced(check)
    if not torch.allclose(eager, scripted, atol=OUTPUT_TOLERANCE, rtol=OUTPUT_TOLERANCE):
        difference = float((eager - scripted).abs().max())
        raise ExportCheckError(
            f"the traced model's outputs differ from the eager model's by up to {difference:.3g}"
        )
    traced.save(str(path))
