"""The latency model of the deployment device (a table of measured layer latencies, keyed and
reused) and allocation under a latency budget, which keeps a layer dense where no Tucker form
of it runs faster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lightning_modules.inference.latency_table import (
    LatencyTable,
    LatencyTableError,
    LayerLatency,
    TimingSetup,
    rank_grid,
)
from lightning_modules.ranks import mode_spectra
from lightning_modules.ranks.allocation import (
    KEEP_DENSE,
    AllocationError,
    LayerSpectra,
    allocate_minimax,
    allocate_uniform_threshold,
)
from lightning_modules.tucker import ConvGeometry

SETUP = TimingSetup("cpu", "float32", threads=1, batch_size=2)
CONV = ConvGeometry.of(16, 16, 3, padding=1)


def test_a_layer_is_measured_once_and_keyed_by_what_changes_a_measurement(tmp_path):
    table = LatencyTable(SETUP)
    measured = table.layer(CONV, (6, 6))
    assert table.layer(CONV, (6, 6)) is measured and len(table) == 1  # cached, not re-timed
    assert measured.out_ranks == measured.in_ranks == rank_grid(16) == [1, 2, 4, 8, 16]
    assert measured.dense_ms > 0 and np.all(np.asarray(measured.folded_ms) > 0)
    table.layer(CONV, (5, 5))  # another input size is another entry
    assert len(table) == 2
    key = table.key(CONV, (6, 6))
    for part in ("cpu", "float32", "t1", "b2", "16x16x3x3", "in6x6"):
        assert part in key, key
    assert LatencyTable(TimingSetup("cpu", "float32", 2, 2)).key(CONV, (6, 6)) != key
    assert LatencyTable(TimingSetup("cpu", "float32", 1, 8)).key(CONV, (6, 6)) != key

    path = tmp_path / "latency.json"
    table.save(path)
    reused = LatencyTable.load(path)
    assert reused.layer(CONV, (6, 6)) == measured  # read back, not measured again
    with pytest.raises(LatencyTableError, match="no entry"):
        reused.layer(CONV, (7, 7))  # a frozen table never times on whatever device reads it
    with pytest.raises(LatencyTableError, match="not a latency table"):
        LatencyTable.from_json({"format": "something else"})
    payload = json.loads(path.read_text())
    del payload["setup"]["threads"]
    with pytest.raises(LatencyTableError, match="malformed"):
        LatencyTable.from_json(payload)


def test_the_model_interpolates_between_grid_points_and_never_exceeds_dense():
    model = LayerLatency(dense_ms=5.0, out_ranks=[1, 4], in_ranks=[1, 4],
                         folded_ms=[[1.0, 2.0], [3.0, 8.0]])  # fmt: skip
    assert model.tucker_ms(1, 1) == pytest.approx(1.0)
    assert model.tucker_ms(4, 4) == pytest.approx(8.0)
    assert model.tucker_ms(2.5, 1) == pytest.approx(2.0)  # halfway along N'
    np.testing.assert_allclose(model.tucker_ms(np.array([1, 4]), np.array([4, 1])), [2.0, 3.0])
    # Slower than dense at (4, 4): priced as the dense conv the inference form would keep.
    assert model.cost_ms((4, 4, 9)) == pytest.approx(5.0)


def _kernel(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _latency_model(n: int, c: int, dense_ms: float, scale_ms: float) -> LayerLatency:
    """A folded chain whose latency grows with N' + C' up to `scale_ms` at full ranks."""
    out_ranks, in_ranks = rank_grid(n), rank_grid(c)
    grid = [[scale_ms * (o / n + i / c) / 2 for i in in_ranks] for o in out_ranks]
    return LayerLatency(dense_ms, out_ranks, in_ranks, grid)


def _one_by_one_heavy_net() -> list[LayerSpectra]:
    """An inverted-residual block's decomposable convs: 1x1 expand and project, whose Tucker
    chains (three 1x1s) run slower than the dense 1x1 at any rank, around a 3x3 conv whose
    Tucker form runs up to 4x faster. The latencies are given, as a table of a CPU where this
    holds: which layer pays is the table's finding, the allocator only has to respect it."""
    layers = []
    for name, (n, c, k), dense_ms, chain_ms in (
        ("expand", (64, 16, 1), 1.0, 1.5),  # even rank 1 costs 0.75x dense + overhead
        ("spatial", (64, 64, 3), 4.0, 4.0),
        ("project", (16, 64, 1), 1.0, 1.5),
    ):
        geometry = ConvGeometry.of(c, n, k, padding=k // 2)
        model = _latency_model(n, c, dense_ms, chain_ms)
        if k == 1:  # a floor: three kernel launches cost more than one
            floored = [[max(v, 1.1) for v in row] for row in model.folded_ms]
            model = LayerLatency(dense_ms, model.out_ranks, model.in_ranks, floored)
        spectra = mode_spectra(_kernel((n, c, k, k), len(layers)))
        layers.append(LayerSpectra(name, geometry, spectra, (8, 8), model))
    return layers


@pytest.mark.parametrize("allocate", [allocate_minimax, allocate_uniform_threshold])
def test_a_latency_budget_keeps_the_layers_that_do_not_pay_dense(allocate):
    layers = _one_by_one_heavy_net()
    plan = allocate(layers, target_compression=1.3, metric="latency")
    assert plan.dense_layers == ("expand", "project")
    assert set(plan.ranks) == {"spatial"} and KEEP_DENSE not in plan.ranks.values()
    assert plan.errors["expand"] == plan.errors["project"] == 0.0
    assert plan.met and plan.compression >= 1.3
    # Priced as the table says: the dense 1x1s at their dense latency, the 3x3 on the grid.
    spatial = layers[1].latency.cost_ms(plan.ranks["spatial"])
    assert plan.cost == pytest.approx(1.0 + float(spatial) + 1.0)
    assert plan.dense_cost == pytest.approx(6.0)


def test_an_unreachable_speed_up_gets_the_fastest_plan_and_says_it_is_not_met():
    layers = _one_by_one_heavy_net()
    plan = allocate_uniform_threshold(layers, target_compression=50.0, metric="latency")
    assert not plan.met
    assert plan.dense_layers == ("expand", "project")
    assert tuple(plan.ranks["spatial"])[:2] == (1, 1)


def test_a_latency_budget_needs_a_latency_model():
    geometry = ConvGeometry.of(16, 16, 3, padding=1)
    bare = LayerSpectra("conv", geometry, mode_spectra(_kernel((16, 16, 3, 3), 0)), (8, 8))
    with pytest.raises(AllocationError, match="latency model"):
        allocate_minimax([bare], 2.0, metric="latency")
