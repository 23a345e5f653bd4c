"""Measured latency of the exported network against the sweep's dense network, in each runtime
a user may deploy with, at each deployment batch size: median milliseconds timed side by side
in this process (lightning_modules.inference.timing), and their ratio from that one run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_modules.inference import time_side_by_side, torch_threads

RUNTIMES = {"pytorch": "PyTorch", "torchscript": "TorchScript", "onnxruntime": "ONNX Runtime"}
Runner = Callable[[Tensor], Any]


@dataclass(frozen=True)
class Figures:
    """One runtime at one batch size: median ms of the dense and the compressed network."""

    dense_ms: float
    compressed_ms: float

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.compressed_ms

    def as_json(self) -> dict[str, float]:
        return {
            "dense_ms": self.dense_ms,
            "compressed_ms": self.compressed_ms,
            "speedup": self.speedup,
        }


@dataclass(frozen=True)
class Latency:
    """Where it was timed, and batch size -> runtime (RUNTIMES) -> figures."""

    device: str
    device_name: str
    threads: int
    dtype: str
    by_batch: dict[int, dict[str, Figures]]

    def as_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "dtype": self.dtype,
            "note": "median ms of the dense and the exported network timed side by side in "
            "one process; a speed-up (dense / compressed) is a ratio from that one run",
            "batches": {
                str(batch): {runtime: f.as_json() for runtime, f in runtimes.items()}
                for batch, runtimes in self.by_batch.items()
            },
        }


def _calls(runners: Mapping[str, tuple[Runner, Runner]], x: Tensor) -> dict[str, Callable]:
    calls: dict[str, Callable] = {}
    for runtime, (dense, compressed) in runners.items():
        calls[f"{runtime}/dense"] = lambda run=dense: run(x)
        calls[f"{runtime}/compressed"] = lambda run=compressed: run(x)
    return calls


def measure_latency(
    runners: Mapping[str, tuple[Runner, Runner]],
    input_shape: Sequence[int],
    batch_sizes: Sequence[int],
    threads: int,
) -> dict[int, dict[str, Figures]]:
    """Per batch size, per runtime, the (dense, compressed) runners timed on the CPU with
    `threads` torch threads, on random inputs of `input_shape` (C, H, W): a conv's speed does
    not depend on the values it convolves. Every runner of a batch size is timed round-robin
    in one loop, so that a burst of load from another process slows each of them once."""
    generator = torch.Generator().manual_seed(0)
    figures: dict[int, dict[str, Figures]] = {}
    with torch_threads(threads), torch.inference_mode():
        for batch in batch_sizes:
            x = torch.randn(batch, *input_shape, generator=generator)
            seconds = time_side_by_side(_calls(runners, x), "cpu")
            figures[batch] = {
                runtime: Figures(
                    1000 * seconds[f"{runtime}/dense"], 1000 * seconds[f"{runtime}/compressed"]
                )
                for runtime in runners
            }
    return figures
