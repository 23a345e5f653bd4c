"""Measured latency: callables timed side by side in one process, medians after a warm-up.

A speed-up is a ratio of two medians taken in the same run, round-robin: a burst of load from
another process then slows every candidate once instead of the one it hit, and both sides see
the same threads, clocks and caches. On a GPU each call is synchronised, so a median is the
latency a caller waits for, launch overhead included.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

DEFAULT_WARMUP = 3
DEFAULT_RUNS = 15


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` (None: left as it is), then restored."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_side_by_side(
    calls: Mapping[str, Callable[[], Any]],
    device: torch.device | str = "cpu",
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
) -> dict[str, float]:
    """Median seconds per call of each callable, timed round-robin after `warmup` rounds."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    device = torch.device(device)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(warmup + runs):
        for name, call in calls.items():
            _synchronise(device)
            start = time.perf_counter()
            call()
            _synchronise(device)
            if round_index >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def time_modules(
    modules: Mapping[str, torch.nn.Module],
    example: torch.Tensor,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
) -> dict[str, float]:
    """Median seconds of a forward of each module (eval mode, no autograd) on `example`."""
    for module in modules.values():
        module.eval()
    with torch.inference_mode():
        calls = {name: (lambda m=module: m(example)) for name, module in modules.items()}
        return time_side_by_side(calls, example.device, runs, warmup)
