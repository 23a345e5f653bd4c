"""Which rank triples a kernel can have, and how a user's rank specification becomes one.

Rules (docs/design.md, "The Tucker form"): each rank is in 1..its dimension, and at most the
product of the other two.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from lightning_modules.tucker.geometry import ConvGeometry, TuckerRanks


class InvalidRanksError(ValueError):
    """A rank triple that no Tucker decomposition of the kernel can have."""


def validate_ranks(geometry: ConvGeometry, ranks: Sequence[int]) -> TuckerRanks:
    """Return `ranks` as TuckerRanks, or raise InvalidRanksError naming the violated rule.

    Rules: each rank is in 1..its dimension, and at most the product of the other two (a mode-n
    unfolding of an N' x C' x D' core has at most the product of the other ranks columns).
    """
    try:
        if len(ranks) != 3 or any(isinstance(r, bool) for r in ranks):
            raise TypeError
        triple = TuckerRanks(*(operator.index(r) for r in ranks))
    except TypeError:
        raise InvalidRanksError(
            f"{geometry.describe()}: ranks must be three integers (N', C', D'), got {ranks!r}"
        ) from None
    dims = geometry.tensor_shape
    names = ("N'", "C'", "D'")
    for name, rank, dim in zip(names, triple, dims, strict=True):
        if not 1 <= rank <= dim:
            raise InvalidRanksError(
                f"{geometry.describe()} (tensor {dims[0]}x{dims[1]}x{dims[2]}): ranks "
                f"{tuple(triple)} violate 1 <= {name} <= {dim}"
            )
    for i, name in enumerate(names):
        others = [triple[j] for j in range(3) if j != i]
        if triple[i] > others[0] * others[1]:
            other_names = [names[j] for j in range(3) if j != i]
            raise InvalidRanksError(
                f"{geometry.describe()}: ranks {tuple(triple)} violate {name} <= "
                f"{other_names[0]}*{other_names[1]} ({triple[i]} > {others[0] * others[1]})"
            )
    return triple


def make_feasible(ranks: Sequence[int], dims: Sequence[int]) -> tuple[TuckerRanks, str | None]:
    """Clamp ranks into 1..dim, then lower the one rank (at most one can) that exceeds the
    product of the other two. Lowering is the smallest change that keeps the other two ranks.

    Returns the feasible triple and a note describing the change (None when nothing changed).
    """
    clamped = [min(max(int(r), 1), int(d)) for r, d in zip(ranks, dims, strict=True)]
    for i in range(3):
        others = [clamped[j] for j in range(3) if j != i]
        if clamped[i] > others[0] * others[1]:
            clamped[i] = others[0] * others[1]
    result = TuckerRanks(*clamped)
    if tuple(result) == tuple(int(r) for r in ranks):
        return result, None
    return result, f"ranks {tuple(int(r) for r in ranks)} made feasible as {tuple(result)}"


RankSpec = float | str | Sequence[int] | Sequence[float]


def ranks_from_spec(geometry: ConvGeometry, spec: RankSpec) -> TuckerRanks:
    """Turn a rank specification into a valid triple for this layer.

    - `"full"`: the largest feasible ranks, (N, C, D) made feasible: still an exact
      decomposition, since a mode-n rank never exceeds the product of the other two
      dimensions (a 1x1 conv 32 x 16 x 1 has ranks at most (16, 16, 1));
    - a ratio in (0, 1]: each rank round(ratio * dim), at least 1, made feasible;
    - three ratios (floats in (0, 1]): one per mode, likewise;
    - three integers: validated as given (errors are not silently fixed).
    """
    dims = geometry.tensor_shape
    if isinstance(spec, str):
        if spec != "full":
            raise InvalidRanksError(f"unknown rank specification {spec!r} (use 'full' or a ratio)")
        return make_feasible(dims, dims)[0]
    if isinstance(spec, bool):
        raise InvalidRanksError(f"invalid rank specification {spec!r}")
    if isinstance(spec, int | float):
        ratios: Sequence[float] = (float(spec),) * 3
    else:
        values = list(spec)
        if len(values) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return validate_ranks(geometry, values)
        if len(values) != 3 or not all(isinstance(v, int | float) for v in values):
            raise InvalidRanksError(
                f"rank specification must be 'full', a ratio, three ratios or three ints; "
                f"got {spec!r}"
            )
        ratios = [float(v) for v in values]
    for ratio in ratios:
        if not 0.0 < ratio <= 1.0 or math.isnan(ratio):
            raise InvalidRanksError(f"rank ratio must be in (0, 1], got {ratio}")
    wanted = [max(1, round(ratio * dim)) for ratio, dim in zip(ratios, dims, strict=True)]
    ranks, _ = make_feasible(wanted, dims)
    return ranks
