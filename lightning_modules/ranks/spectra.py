"""Multilinear singular values of a conv kernel: the singular values of each mode-n unfolding.

The signal for rank selection is here, not in an SVD of HOOI factors, which are orthonormal
(docs/design.md, "Rank selection"). Untrained kernels have flat spectra: analyse trained ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded, restoring the caller's setting. Why: the unfoldings are small
    (at most a few hundred rows), and on a 2-core machine MKL's threaded SVD of them was 5-30x
    slower than single-threaded and erratic (HOOI of one 128x128x3x3 kernel: 0.2-0.4 s with one
    thread, 1-13 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True, eq=False)
class ModeSpectra:
    """Descending singular values (float64) of the three unfoldings of an N x C x D kernel:
    mode 1 (N x C*D), mode 2 (C x N*D), mode 3 (D x N*C). Round-off-level values are 0."""

    out: np.ndarray
    in_: np.ndarray
    spatial: np.ndarray

    def as_tuple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (self.out, self.in_, self.spatial)

    # Arrays make the generated __eq__ ambiguous; compare values instead.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModeSpectra):
            return NotImplemented
        return all(
            np.array_equal(mine, theirs)
            for mine, theirs in zip(self.as_tuple(), other.as_tuple(), strict=True)
        )

    __hash__ = None  # type: ignore[assignment]


def _as_three_way(weight: torch.Tensor) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor kernel, got {type(weight).__name__}")
    if weight.dim() not in (3, 4):
        raise ValueError(
            "expected a conv kernel N x C x kh x kw (or N x C x D), "
            f"got shape {tuple(weight.shape)}"
        )
    kernel = weight.detach().to(device="cpu", dtype=torch.float64)
    return kernel.reshape(kernel.shape[0], kernel.shape[1], -1)


def unfoldings(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mode-1, mode-2 and mode-3 unfoldings (the column order does not change singular values)."""
    kernel = _as_three_way(weight)
    n, c, d = kernel.shape
    return (
        kernel.reshape(n, c * d),
        kernel.permute(1, 0, 2).reshape(c, n * d),
        kernel.permute(2, 0, 1).reshape(d, n * c),
    )


def _singular_values(unfolding: torch.Tensor, precision: torch.dtype) -> np.ndarray:
    """Singular values, with those below the round-off of the kernel's own precision set to 0
    (numpy's matrix_rank rule, s_max * max(shape) * eps): a float32 kernel of exact low rank
    then has exactly that many nonzero values, as a float64 one does."""
    rows, columns = unfolding.shape
    # The same values as the unfolding's own, but on this torch (MKL's gesdd) a wide matrix took
    # about 10x as long as its transpose: 1.9 s against 0.18 s for a 512 x 4608 unfolding of a
    # 512x512x3x3 kernel, one thread. Most unfoldings of a conv kernel are wide.
    tall = unfolding if rows >= columns else unfolding.T
    values = torch.linalg.svdvals(tall).numpy().copy()
    if values.size:
        values[values <= values[0] * max(unfolding.shape) * torch.finfo(precision).eps] = 0.0
    values.setflags(write=False)  # shared by frozen dataclasses: nobody should edit it in place
    return values


def mode_spectra(weight: torch.Tensor) -> ModeSpectra:
    """Multilinear singular values of a conv kernel (N x C x kh x kw, or N x C x D), computed in
    float64; values at the round-off level of the kernel's dtype are returned as 0."""
    matrices = unfoldings(weight)
    precision = weight.dtype if weight.is_floating_point() else torch.float64
    with one_thread():
        out, in_, spatial = (_singular_values(m, precision) for m in matrices)
    return ModeSpectra(out=out, in_=in_, spatial=spatial)
