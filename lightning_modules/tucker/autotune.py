"""Choose the fastest execution path of a Tucker convolution by timing it, once per shape.

Why timing rather than FLOP counts: measured on a 2-core CPU, a grouped 3x3 conv over 64 maps
with 3 filters each (plus its 1x1) ran about 5x slower than a dense 64->64 3x3 conv with 2.6x
the FLOPs; how well each kernel is optimised depends on the backend, the device and the shape,
which no simple cost model captures. So, like cuDNN's benchmark mode, every candidate path is
timed on the first input of a given (layer shape, ranks, input shape, device, dtype, autograd
mode) and the winner is cached for the process. Under torch.compile and on meta tensors (no
timing possible) the cost model picks the path with the fewest multiply-adds instead
(docs/design.md, "Execution paths").
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_modules.tucker.geometry import ConvGeometry
from lightning_modules.tucker.ops import PATHS, ConvPath, TuckerFactors

# Timing repetitions per candidate after one warm-up run; the minimum is kept because noise
# (other processes, frequency scaling) only ever adds time.
_TIMED_RUNS = 5
_choices: dict[tuple, str] = {}


def clear_cache() -> None:
    """Forget every cached choice (e.g. after moving to another device)."""
    _choices.clear()


def cached_choices() -> dict[tuple, str]:
    """A copy of the cache: key -> chosen implementation."""
    return dict(_choices)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_path(
    path: ConvPath,
    x: Tensor,
    factors: TuckerFactors,
    bias: Tensor | None,
    geometry: ConvGeometry,
    with_backward: bool,
) -> float:
    """Seconds for one call (forward, or forward+backward)."""
    _synchronize(x.device)
    start = time.perf_counter()
    out = path.forward(x, factors, bias, geometry)
    if with_backward:
        out.backward(torch.ones_like(out))
    _synchronize(x.device)
    return time.perf_counter() - start


def cost_model_choice(geometry: ConvGeometry, ranks: Sequence[int], x: Tensor) -> str:
    """The path with the fewest multiply-adds for this batch (kernel rebuild included)."""
    hw = (x.shape[-2], x.shape[-1])
    batch = x.shape[0] if x.dim() == 4 else 1
    costs = {
        name: batch * path.flops_per_image(geometry, ranks, hw)
        + path.flops_per_call(geometry, ranks)
        for name, path in PATHS.items()
    }
    return min(costs, key=costs.__getitem__)


def choose_implementation(
    geometry: ConvGeometry, x: Tensor, factors: TuckerFactors, bias: Tensor | None
) -> str:
    """The fastest path for this layer and input, timed on first use and cached.

    Timing runs on detached copies, so the layer's gradients and autograd graph are untouched.
    """
    ranks = tuple(factors.core.shape)
    with_backward = torch.is_grad_enabled() and any(
        p is not None and p.requires_grad for p in (*factors, bias)
    )
    if torch.compiler.is_compiling() or x.device.type == "meta":
        # Nothing to time while tracing or on shape-only meta tensors.
        return cost_model_choice(geometry, ranks, x)
    key = (geometry, ranks, tuple(x.shape), x.device, x.dtype, with_backward)
    choice = _choices.get(key)
    if choice is not None:
        return choice
    probe_x = x.detach().requires_grad_(with_backward and x.requires_grad)
    # Each path gets its own copies, so that gradients of one never accumulate into another's.
    probes = {
        name: (
            factors.detached(with_backward),
            None if bias is None else bias.detach().requires_grad_(with_backward),
        )
        for name in PATHS
    }
    # Round-robin, best of _TIMED_RUNS after a warm-up round: a burst of load from another
    # process then slows every candidate once instead of condemning the one it hit.
    timings = dict.fromkeys(PATHS, float("inf"))
    with torch.set_grad_enabled(with_backward):
        for run in range(_TIMED_RUNS + 1):
            for name, path in PATHS.items():
                seconds = _run_path(path, probe_x, *probes[name], geometry, with_backward)
                if run > 0:
                    timings[name] = min(timings[name], seconds)
    choice = min(timings, key=timings.__getitem__)
    _choices[key] = choice
    return choice
