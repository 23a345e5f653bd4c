"""Global rank allocation under a cost budget, on synthetic kernels of known multilinear rank and
against brute force: the budget is met, the largest estimated error is the smallest any plan
within the budget has, and the answer is the same every time."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch

from lightning_modules.ranks import mode_spectra
from lightning_modules.ranks.allocation import (
    AllocationError,
    LayerSpectra,
    allocate_minimax,
    allocate_uniform_threshold,
    estimated_error,
    left_out_energy,
)
from lightning_modules.ranks.spectra import ModeSpectra
from lightning_modules.tucker import ConvGeometry, hooi, validate_ranks
from lightning_modules.tucker.cost import tucker_flops, tucker_param_count


def _orthonormal(rows: int, columns: int, generator: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(rows, columns, generator=generator, dtype=torch.float64))[0]


def low_rank_kernel(shape: tuple[int, int, int, int], ranks: tuple[int, int, int], seed: int):
    """An N x C x k x k kernel of exact multilinear rank `ranks`, every component strong."""
    generator = torch.Generator().manual_seed(seed)
    n, c, kh, kw = shape
    core = torch.randn(*ranks, generator=generator, dtype=torch.float64)
    factors = [
        _orthonormal(dim, rank, generator) for dim, rank in zip((n, c, kh * kw), ranks, strict=True)
    ]
    return torch.einsum("abc,na,mb,dc->nmd", core, *factors).reshape(shape)


def layer(name: str, kernel: torch.Tensor, input_hw=(8, 8)) -> LayerSpectra:
    n, c, kh, kw = kernel.shape
    geometry = ConvGeometry.of(c, n, (kh, kw), padding=1)
    return LayerSpectra(name, geometry, mode_spectra(kernel), input_hw)


TRUE = {"a": ((16, 12, 3, 3), (6, 4, 3)), "b": ((32, 24, 3, 3), (10, 8, 5))}


@pytest.fixture(scope="module")
def exact_layers() -> list[LayerSpectra]:
    return [layer(name, low_rank_kernel(shape, ranks, seed)) for seed, (name, (shape, ranks))
            in enumerate(TRUE.items())]  # fmt: skip


def test_a_budget_that_buys_the_true_ranks_gets_them_exactly(exact_layers):
    true_cost = sum(tucker_param_count(item.geometry, TRUE[item.name][1], bias=False)
                    for item in exact_layers)  # fmt: skip
    dense = sum(
        item.geometry.tensor_shape[0] * item.geometry.tensor_shape[1] * 9 for item in exact_layers
    )
    plan = allocate_minimax(exact_layers, dense / true_cost)
    assert {name: tuple(r) for name, r in plan.ranks.items()} == {
        n: r for n, (_, r) in TRUE.items()
    }
    assert plan.max_error < 1e-6 and plan.met
    assert plan.cost == true_cost and plan.compression == pytest.approx(dense / true_cost)
    # ... and HOOI at those ranks reconstructs the kernels (the estimate is an upper bound).
    for spectra in exact_layers:
        kernel = low_rank_kernel(*TRUE[spectra.name], list(TRUE).index(spectra.name))
        assert hooi(kernel, plan.ranks[spectra.name]).relative_error < 1e-6


@pytest.mark.parametrize("metric", ["params", "flops"])
@pytest.mark.parametrize("allocate", [allocate_minimax, allocate_uniform_threshold])
def test_every_reachable_target_is_met_with_feasible_ranks(allocate, metric):
    noisy = []
    for seed, name in enumerate(TRUE):
        shape, ranks = TRUE[name]
        noise = torch.randn(
            shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        noisy.append(layer(name, low_rank_kernel(shape, ranks, 7) + 0.05 * noise))
    for target in (1.0, 1.5, 3.0, 8.0, 20.0):
        plan = allocate(noisy, target, metric)
        assert plan.met, (target, plan.compression)
        assert plan.compression >= target * (1 - 1e-9)
        for spectra in noisy:
            validate_ranks(spectra.geometry, plan.ranks[spectra.name])
        cost = tucker_flops if metric == "flops" else None
        recomputed = sum(
            cost(item.geometry, plan.ranks[item.name], item.input_hw) if cost
            else tucker_param_count(item.geometry, plan.ranks[item.name], bias=False)
            for item in noisy
        )  # fmt: skip
        assert recomputed == plan.cost
    # Beyond rank 1 everywhere, no plan meets it: the cheapest one, flagged.
    extreme = allocate(noisy, 10_000.0, metric)
    assert not extreme.met
    assert all(tuple(r) == (1, 1, 1) for r in extreme.ranks.values())


@pytest.mark.parametrize("seed", [0, 1, 3, 6])
def test_an_unreachable_target_gets_rank_one_whatever_the_round_off(seed):
    """Spectra given as numbers (no BLAS anywhere), chosen so that sqrt(e)**2 != e for the
    layer's own error at (1, 1, 1): before squared levels, the layer no longer fitted at its
    own error and got (1, 2, 2) or (2, 2, 1)."""
    rng = np.random.default_rng(seed)
    spectra = ModeSpectra(*(np.sort(rng.random(k))[::-1] for k in (4, 3, 4)))
    only = LayerSpectra("b", ConvGeometry.of(3, 4, (2, 2), padding=1), spectra, (4, 4))
    for metric in ("params", "flops"):
        for allocate in (allocate_minimax, allocate_uniform_threshold):
            plan = allocate([only], 10_000.0, metric)
            assert tuple(plan.ranks["b"]) == (1, 1, 1) and not plan.met


def _feasible_triples(geometry: ConvGeometry):
    n, c, d = geometry.tensor_shape
    for ranks in itertools.product(range(1, n + 1), range(1, c + 1), range(1, d + 1)):
        r1, r2, r3 = ranks
        if r1 <= r2 * r3 and r2 <= r1 * r3 and r3 <= r1 * r2:
            yield ranks


def test_the_largest_error_is_the_smallest_any_plan_within_budget_has():
    """Brute force over every pair of feasible triples of two small layers."""
    generator = torch.Generator().manual_seed(3)
    kernels = {"x": torch.randn(6, 4, 2, 2, generator=generator, dtype=torch.float64),
               "y": torch.randn(5, 6, 2, 2, generator=generator, dtype=torch.float64)}  # fmt: skip
    # A trained-like spread: scale the modes unevenly so the layers differ.
    kernels["x"] = (
        kernels["x"] * torch.linspace(3, 0.1, 6, dtype=torch.float64)[:, None, None, None]
    )
    layers = [layer(name, kernel) for name, kernel in kernels.items()]
    tails = {item.name: [left_out_energy(s, dim) for s, dim in
                      zip(item.spectra.as_tuple(), item.geometry.tensor_shape, strict=True)]
             for item in layers}  # fmt: skip
    options = {
        item.name: [(tucker_param_count(item.geometry, r, bias=False),
                  estimated_error(tails[item.name], r)) for r in _feasible_triples(item.geometry)]
        for item in layers
    }  # fmt: skip
    dense = sum(6 * 4 * 4 if item.name == "x" else 5 * 6 * 4 for item in layers)
    for target in (1.2, 1.6, 2.0, 2.5, 3.0):
        budget = dense / target
        best = min(
            max(ex, ey) for (cx, ex), (cy, ey) in itertools.product(options["x"], options["y"])
            if cx + cy <= budget
        )  # fmt: skip
        plan = allocate_minimax(layers, target)
        assert plan.met
        assert plan.max_error == pytest.approx(best, abs=1e-9), target
        assert plan.max_error <= allocate_uniform_threshold(layers, target).max_error + 1e-12


def test_the_same_input_gives_the_same_plan_in_milliseconds(exact_layers):
    started = time.perf_counter()
    first = allocate_minimax(exact_layers, 6.0, "flops")
    seconds = time.perf_counter() - started
    again = allocate_minimax(list(exact_layers), 6.0, "flops")
    assert first == again
    assert seconds < 2.0  # tens of milliseconds here; generous for a loaded CI machine


def test_bad_inputs_are_refused(exact_layers):
    with pytest.raises(AllocationError, match="at least 1"):
        allocate_minimax(exact_layers, 0.5)
    with pytest.raises(AllocationError, match="metric"):
        allocate_minimax(exact_layers, 2.0, "joules")  # type: ignore[arg-type]
    with pytest.raises(AllocationError, match="no layers"):
        allocate_minimax([], 2.0)
    blind = [LayerSpectra(item.name, item.geometry, item.spectra, None) for item in exact_layers]
    with pytest.raises(AllocationError, match="input size"):
        allocate_minimax(blind, 2.0, "flops")
    assert np.isclose(left_out_energy(np.array([3.0, 4.0]), 3), [1.0, 16 / 25, 0.0, 0.0]).all()
