"""A compressed network's measured speed against its dense original: its inference form, chosen
once for all the batch sizes (form.py: a layer goes Tucker only where that is faster at every
one), and the dense model, timed side by side at each batch size in this process with the same
threads (timing.py)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lightning_modules.inference.form import inference_form
from lightning_modules.inference.timing import DEFAULT_RUNS, time_modules, torch_threads


@dataclass(frozen=True)
class SpeedFigures:
    """Median latencies (ms) at one batch size, and their ratio: a speed-up from one run."""

    batch_size: int
    dense_ms: float
    compressed_ms: float
    forms: dict[str, str]  # layer -> the form the inference form gave it

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.compressed_ms


def measure_speed(
    dense: nn.Module,
    compressed: nn.Module,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    threads: int | None = None,
    runs: int = DEFAULT_RUNS,
) -> dict[int, SpeedFigures]:
    """Per batch size, `compressed` in its inference form against `dense` (both copied to
    `device` and `dtype`; the caller's models are left as they are), on random inputs of
    `input_shape` (C, H, W): the speed of a conv does not depend on the values it convolves."""
    device = torch.device(device)
    dense = _on(dense, device, dtype)
    compressed = _on(compressed, device, dtype)
    generator = torch.Generator().manual_seed(0)
    examples = {
        batch: torch.randn(batch, *input_shape, generator=generator).to(device, dtype)
        for batch in batch_sizes
    }
    figures = {}
    with torch_threads(threads if device.type == "cpu" else None):
        fast = inference_form(compressed, list(examples.values()))
        for batch, x in examples.items():
            seconds = time_modules({"dense": dense, "compressed": fast}, x, runs)
            figures[batch] = SpeedFigures(
                batch, 1000 * seconds["dense"], 1000 * seconds["compressed"],
                dict(fast.tucker_forms),
            )  # fmt: skip
    return figures


def _on(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """An eval-mode copy on `device` in `dtype`: the caller's model keeps its mode and place
    (a trial times its model before training it)."""
    return copy.deepcopy(model).to(device=device, dtype=dtype).eval()
