"""HOOI (higher-order orthogonal iteration) of a conv kernel, through tensorly.

The kernel N x C x kh x kw is decomposed as the 3-way tensor N x C x (kh*kw). tensorly's
`tucker` is HOOI with an SVD (HOSVD) initialisation; it runs on the PyTorch backend inside a
thread-local backend context, so the caller's tensorly backend is left as it was
(docs/design.md, "Initialisation").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorly
import torch
from tensorly.decomposition import tucker
from torch import Tensor

from lightning_modules.tucker.ops import TuckerFactors


@dataclass(frozen=True)
class HooiResult:
    """The Tucker factors HOOI found and how far their kernel is from the given one."""

    factors: TuckerFactors
    relative_error: float


def hooi(
    weight: Tensor, ranks: Sequence[int], n_iter_max: int = 25, tol: float = 1e-6
) -> HooiResult:
    """Tucker decomposition of a conv kernel (N x C x kh x kw, or already N x C x D) at `ranks`.

    HOOI stops when the relative error changes by less than `tol` between iterations. On a
    kernel with a flat spectrum it creeps on for hundreds of iterations while gaining
    nothing visible (tensorly's default 1e-7 made a 128x128x3x3 kernel take 100 iterations);
    the SVD initialisation already gives most of the fit, so a few iterations suffice for a
    warm start and for ranking candidates.

    Runs in float64 for accuracy (kernels are small) and returns tensors in the weight's dtype
    and device. `relative_error` is ||W - W_hat||_F / ||W||_F (0 for an all-zero kernel).
    """
    target = weight.detach().to(torch.float64)
    target = target.reshape(target.shape[0], target.shape[1], -1)
    with tensorly.backend_context("pytorch", local_threadsafe=True):
        core, factors = tucker(
            target, rank=[int(r) for r in ranks], n_iter_max=n_iter_max, tol=tol, init="svd"
        )
        approximation = tensorly.tucker_to_tensor((core, factors))
    norm = torch.linalg.norm(target)
    error = torch.linalg.norm(target - approximation) / norm if norm > 0 else norm
    as_weight = {"dtype": weight.dtype, "device": weight.device}
    return HooiResult(
        TuckerFactors(*(t.to(**as_weight) for t in (core, *factors))), relative_error=float(error)
    )
