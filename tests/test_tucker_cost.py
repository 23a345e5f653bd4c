"""Rank rules and the cost model, checked against built layers and torch's own FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lightning_modules.tucker import (
    ConvGeometry,
    InvalidRanksError,
    TuckerConv2d,
    make_feasible,
    path_flops,
    ranks_from_spec,
    validate_ranks,
)
from lightning_modules.tucker.cost import (
    dense_flops,
    dense_param_count,
    reconstruction_flops,
    tucker_flops,
    tucker_param_count,
)

GEOMETRY = ConvGeometry.of(256, 128, 3, padding=1)  # tensor 128 x 256 x 9


def test_valid_ranks_pass_through():
    assert validate_ranks(GEOMETRY, (32, 64, 3)) == (32, 64, 3)
    assert validate_ranks(GEOMETRY, (128, 256, 9)).spatial_rank == 9


@pytest.mark.parametrize(
    ("ranks", "rule"),
    [
        ((0, 4, 3), "1 <= N' <= 128"),
        ((129, 256, 9), "1 <= N' <= 128"),
        ((8, 300, 3), "1 <= C' <= 256"),
        ((8, 8, 10), "1 <= D' <= 9"),
        ((64, 4, 3), "N' <= C'*D' (64 > 12)"),
        ((2, 64, 3), "C' <= N'*D' (64 > 6)"),
        ((2, 2, 5), "D' <= N'*C' (5 > 4)"),
    ],
)
def test_invalid_ranks_name_shape_ranks_and_rule(ranks, rule):
    with pytest.raises(InvalidRanksError) as error:
        validate_ranks(GEOMETRY, ranks)
    message = str(error.value)
    assert "128x256x3x3" in message
    assert str(ranks) in message
    assert rule in message


@pytest.mark.parametrize("ranks", [(1, 2), (1.5, 2, 3), ("a", 1, 1), (True, 1, 1)])
def test_malformed_ranks_are_refused(ranks):
    with pytest.raises(InvalidRanksError, match="three integers"):
        validate_ranks(GEOMETRY, ranks)


def test_make_feasible_lowers_the_single_violating_rank():
    assert make_feasible((64, 4, 3), (128, 256, 9)) == (
        (12, 4, 3),
        "ranks (64, 4, 3) made feasible as (12, 4, 3)",
    )
    assert make_feasible((8, 8, 3), (128, 256, 9)) == ((8, 8, 3), None)
    assert make_feasible((500, 0, 3), (128, 256, 9))[0] == (3, 1, 3)


def test_rank_specs():
    assert ranks_from_spec(GEOMETRY, "full") == (128, 256, 9)
    # "full" is the largest feasible triple: a 32x16 1x1 conv has multilinear rank <= (16, 16, 1)
    assert ranks_from_spec(ConvGeometry.of(16, 32, 1), "full") == (16, 16, 1)
    assert ranks_from_spec(GEOMETRY, 0.25) == (32, 64, 2)
    assert ranks_from_spec(GEOMETRY, (0.5, 0.25, 1.0)) == (64, 64, 9)
    assert ranks_from_spec(GEOMETRY, (16, 16, 3)) == (16, 16, 3)
    # The first conv of a grayscale net: C = 1, so N' <= D'.
    first = ConvGeometry.of(1, 16, 3)
    assert ranks_from_spec(first, 0.5) == (4, 1, 4)
    for bad in (0.0, 1.5, -0.25, "half", (0.5, 2.0, 0.5), (16, 16)):
        with pytest.raises(InvalidRanksError):
            ranks_from_spec(GEOMETRY, bad)
    with pytest.raises(InvalidRanksError, match="N' <= C'\\*D'"):
        ranks_from_spec(GEOMETRY, (64, 4, 3))


@pytest.mark.parametrize("bias", [True, False])
def test_param_counts_match_built_layers(bias):
    layer = TuckerConv2d(256, 128, 3, (32, 64, 3), padding=1, bias=bias)
    assert layer.param_count() == sum(p.numel() for p in layer.parameters())
    assert tucker_param_count(GEOMETRY, (32, 64, 3), bias) == layer.param_count()
    dense = torch.nn.Conv2d(256, 128, 3, bias=bias)
    assert dense_param_count(GEOMETRY, bias) == sum(p.numel() for p in dense.parameters())


def test_factorized_cost_is_the_design_formula():
    # C*C' (input resolution) + C'*D'*d^2 + C'*D'*N' + N'*N per output pixel (stride 1, same size)
    n, c, rn, rc, rd, h = 128, 256, 32, 64, 3, 16
    expected = c * rc * h * h + (rc * rd * 9 + rc * rd * rn + rn * n) * h * h
    assert path_flops(GEOMETRY, (rn, rc, rd), (h, h), "factorized") == expected
    assert dense_flops(GEOMETRY, (h, h)) == n * c * 9 * h * h
    # The source paper priced the factorised conv above dense; at small ranks it is far below.
    assert tucker_flops(GEOMETRY, (rn, rc, rd), (h, h)) < dense_flops(GEOMETRY, (h, h)) / 4


@pytest.mark.parametrize(
    ("geometry", "ranks"),
    [
        (ConvGeometry.of(16, 24, 3, stride=2, padding=1), (6, 5, 3)),
        (ConvGeometry.of(16, 24, (3, 5), padding="same", dilation=2), (24, 6, 4)),  # N' = N
        (ConvGeometry.of(16, 24, 3), (6, 16, 9)),  # C' = C
        (ConvGeometry.of(8, 8, 1), (8, 8, 1)),
    ],
)
@pytest.mark.parametrize("implementation", ["reconstructed", "factorized", "folded"])
def test_flops_agree_with_torch_flop_counter(geometry, ranks, implementation):
    layer = TuckerConv2d(
        geometry.in_channels,
        geometry.out_channels,
        geometry.kernel_size,
        ranks,
        stride=geometry.stride,
        padding=geometry.padding,
        dilation=geometry.dilation,
        bias=False,
        implementation=implementation,
    )
    batch, hw = 3, (13, 11)
    x = torch.randn(batch, geometry.in_channels, *hw)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = layer(x)
    assert tuple(out.shape[2:]) == geometry.output_hw(hw)
    expected = batch * path_flops(geometry, ranks, hw, implementation)
    n, c, d = geometry.tensor_shape
    rn, rc, rd = ranks
    # torch also counts the matrix products on the weights (kernel rebuild, folds, merges).
    weight_products = {
        "reconstructed": reconstruction_flops(geometry, ranks),
        "factorized": n * rn * rc * rd if rn == n else 0,
        "folded": rn * rc * rd * d
        + (rn * c * rc * d if rc == c else 0)
        + (n * rn * (c if rc == c else rc) * d if rn == n else 0),
    }[implementation]
    assert counter.get_total_flops() == 2 * (expected + weight_products)
