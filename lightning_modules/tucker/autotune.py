"""Choose the fastest execution path of a Tucker convolution by timing it, once per call site.

Why timing rather than FLOP counts: measured on a 2-core CPU, a grouped 3x3 conv over 64 maps
with 3 filters each (plus its 1x1) ran about 5x slower than a dense 64->64 3x3 conv with 2.6x
the FLOPs; on an H100 every path of a CIFAR-sized layer runs at kernel-launch latency. How well
each kernel is optimised depends on the backend, the device, the dtype and the shape, which no
simple cost model captures. So, like cuDNN's benchmark mode, every candidate path is timed on
the first input of a given call signature (layer shape, ranks, input shape, device, dtype,
autograd mode and autocast state: bf16 autocast runs other kernels than fp32) and the winner
is cached for the process. The candidates include `reconstructed`, the dense-equivalent path
(rebuild W, one cuDNN conv), so `auto` is never slower than dense by more than the rebuild.
Under torch.compile and on meta tensors (no timing possible) the cost model picks the path
with the fewest multiply-adds instead (docs/design.md, "Execution paths").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lightning_modules.tucker.geometry import ConvGeometry
from lightning_modules.tucker.ops import PATHS, ConvPath, Prepared, TuckerFactors

# Timed repetitions per candidate after one warm-up round; the minimum is kept because noise
# (other processes, frequency scaling) only ever adds time. A GPU call costs microseconds and
# its timer (CUDA events) is precise, so more runs are cheap there and steady the choice.
_TIMED_RUNS = {"cuda": 20}
_DEFAULT_TIMED_RUNS = 5
_choices: dict[tuple, str] = {}

# What decides which kernels a call runs, besides the layer: see call_signature.
CallSignature = tuple
# A layer's cached `prepare` results by path name (a layer running without autograd builds its
# kernels once, so only `run` is timed and paid per call).
PreparedLookup = Callable[[str], Prepared]


def clear_cache() -> None:
    """Forget every cached choice (e.g. after moving to another device)."""
    _choices.clear()


def cached_choices() -> dict[tuple, str]:
    """A copy of the cache: key -> chosen implementation."""
    return dict(_choices)


def autocast_state(device_type: str) -> tuple[bool, torch.dtype | None]:
    """(enabled, dtype) of autocast for a device type: the same layer runs bf16 kernels under
    bf16 autocast and fp32 ones without, so a choice made in one state says nothing of the
    other."""
    if not torch.amp.is_autocast_available(device_type):
        return (False, None)
    if not torch.is_autocast_enabled(device_type):
        return (False, None)
    return (True, torch.get_autocast_dtype(device_type))


def call_signature(
    x: Tensor, factors: TuckerFactors, bias: Tensor | None, prepared: bool = False
) -> CallSignature:
    """Everything about a call (beyond the layer itself) that changes which path is fastest;
    `prepared`: whether the layer's kernels are already built (a cached layer pays `run` only)."""
    with_backward = torch.is_grad_enabled() and (
        (bias is not None and bias.requires_grad) or any(f.requires_grad for f in factors)
    )
    device = x.device
    return (x.shape, x.dtype, device, with_backward, prepared, autocast_state(device.type))


def _timed_call(
    path: ConvPath,
    x: Tensor,
    factors: TuckerFactors,
    bias: Tensor | None,
    geometry: ConvGeometry,
    with_backward: bool,
    prepared: Prepared | None = None,
) -> float:
    """Seconds for one call (forward, or forward+backward), timed by CUDA events on a GPU
    (device time, no host-side jitter) and by the wall clock elsewhere. With `prepared`, only
    the path's `run` on those weights is timed."""
    on_cuda = x.device.type == "cuda"
    if on_cuda:
        start_event = torch.cuda.Event(enable_timing=True)
        end_event = torch.cuda.Event(enable_timing=True)
        start_event.record()
    else:
        start = time.perf_counter()
    if prepared is None:
        out = path.forward(x, factors, bias, geometry)
    else:
        out = path.run(x, prepared, factors, bias, geometry)
    if with_backward:
        out.backward(torch.ones_like(out))
    if on_cuda:
        end_event.record()
        end_event.synchronize()
        return start_event.elapsed_time(end_event) / 1000.0
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


def time_paths(
    geometry: ConvGeometry,
    x: Tensor,
    factors: TuckerFactors,
    bias: Tensor | None,
    with_backward: bool,
    prepared: PreparedLookup | None = None,
) -> dict[str, float]:
    """Best-of-n seconds of every path on this input, in the caller's autocast state; with
    `prepared` (no autograd), of each path's `run` on its already built weights.

    Timing runs on detached copies, so the layer's gradients and autograd graph are untouched.
    """
    probe_x = x.detach().requires_grad_(with_backward and x.requires_grad)
    # Each path gets its own copies, so that gradients of one never accumulate into another's.
    probes = {
        name: (
            factors.detached(with_backward),
            None if bias is None else bias.detach().requires_grad_(with_backward),
        )
        for name in PATHS
    }
    # Round-robin, best of n after a warm-up round: a burst of load from another process then
    # slows every candidate once instead of condemning the one it hit.
    timed_runs = _TIMED_RUNS.get(x.device.type, _DEFAULT_TIMED_RUNS)
    timings = dict.fromkeys(PATHS, float("inf"))
    with torch.set_grad_enabled(with_backward):
        for run in range(timed_runs + 1):
            for name, path in PATHS.items():
                built = None if prepared is None else prepared(name)
                seconds = _timed_call(path, probe_x, *probes[name], geometry, with_backward, built)
                if run > 0:
                    timings[name] = min(timings[name], seconds)
    return timings


def choose_implementation(
    geometry: ConvGeometry,
    x: Tensor,
    factors: TuckerFactors,
    bias: Tensor | None,
    local_choices: dict[CallSignature, str] | None = None,
    prepared: PreparedLookup | None = None,
) -> str:
    """The fastest path for this layer and input, timed on first use and cached. `prepared`:
    the layer's cached weights per path (it runs without autograd), whose `run` alone counts.

    `local_choices` is the calling layer's own memo, keyed by the call signature alone: a hit
    there costs one small tuple and one dict lookup, so dispatch stays in the microseconds
    (the process-wide cache, shared by layers of equal shape, also hashes the geometry).
    """
    if torch.compiler.is_compiling() or x.device.type == "meta":
        # Nothing to time while tracing or on shape-only meta tensors.
        return cost_model_choice(geometry, tuple(factors.core.shape), x)
    signature = call_signature(x, factors, bias, prepared is not None)
    if local_choices is not None:
        choice = local_choices.get(signature)
        if choice is not None:
            return choice
    key = (geometry, tuple(factors.core.shape), *signature)
    choice = _choices.get(key)
    if choice is None:
        with_backward = signature[3]
        timings = time_paths(geometry, x, factors, bias, with_backward, prepared)
        choice = min(timings, key=timings.__getitem__)
        _choices[key] = choice
    if local_choices is not None:
        local_choices[signature] = choice
    return choice
