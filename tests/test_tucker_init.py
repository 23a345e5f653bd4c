"""Initialisation of TuckerConv2d: from a trained conv by HOOI, and fresh (Kaiming-matched)."""

import math

import pytest
import tensorly
import torch

from lightning_modules.tucker import IMPLEMENTATIONS, TuckerConv2d


def low_multilinear_rank_conv(shape, ranks, noise=0.0, seed=0):
    """A conv whose kernel (N x C x kh x kw, spatial flattened) has the given multilinear rank."""
    generator = torch.Generator().manual_seed(seed)
    n, c, kh, kw = shape
    core = torch.randn(ranks, generator=generator)
    factors = [torch.linalg.qr(torch.randn(dim, r, generator=generator))[0]
               for dim, r in zip((n, c, kh * kw), ranks, strict=True)]  # fmt: skip
    weight = torch.einsum("abk,na,cb,sk->ncs", core, *factors).reshape(shape)
    weight += noise * weight.std() * torch.randn(shape, generator=generator)
    conv = torch.nn.Conv2d(c, n, (kh, kw), stride=2, padding=1, dilation=1)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return conv


@pytest.mark.parametrize("implementation", [*IMPLEMENTATIONS, "auto"])
def test_full_ranks_reproduce_the_dense_conv(implementation):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 8, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1))
    layer = TuckerConv2d.from_conv(conv, "full", implementation=implementation)
    assert layer.ranks == (8, 6, 6)
    assert layer.reconstruction_error < 1e-6
    assert (layer.stride, layer.padding, layer.dilation) == ((2, 1), (1, 2), (2, 1))
    torch.testing.assert_close(layer.bias, conv.bias)
    x = torch.randn(3, 6, 12, 10)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


def test_hooi_recovers_a_kernel_of_known_multilinear_rank():
    conv = low_multilinear_rank_conv((16, 12, 3, 3), (6, 4, 3))
    layer = TuckerConv2d.from_conv(conv, (6, 4, 3))
    assert layer.reconstruction_error < 1e-5
    torch.testing.assert_close(layer.reconstruct(), conv.weight, rtol=1e-4, atol=1e-5)


def test_reported_error_is_the_relative_reconstruction_error():
    conv = low_multilinear_rank_conv((16, 12, 3, 3), (6, 4, 3), noise=0.1)
    layer = TuckerConv2d.from_conv(conv, (4, 3, 2))
    with torch.no_grad():
        measured = torch.linalg.norm(layer.reconstruct() - conv.weight) / torch.linalg.norm(
            conv.weight
        )
    assert layer.reconstruction_error == pytest.approx(float(measured), rel=1e-4)
    assert 0.05 < layer.reconstruction_error < 1.0
    # more rank, less error
    assert TuckerConv2d.from_conv(conv, (6, 4, 3)).reconstruction_error < layer.reconstruction_error


@pytest.mark.parametrize("backend", ["numpy", "pytorch"])
def test_from_conv_leaves_the_callers_tensorly_backend_alone(backend):
    tensorly.set_backend(backend)
    try:
        TuckerConv2d.from_conv(torch.nn.Conv2d(4, 4, 3), (2, 2, 3))
        assert tensorly.get_backend() == backend
    finally:
        tensorly.set_backend("numpy")


def test_from_conv_random_init_keeps_geometry_not_weights():
    conv = low_multilinear_rank_conv((16, 12, 3, 3), (6, 4, 3))
    layer = TuckerConv2d.from_conv(conv, 0.5, init="random")
    assert layer.ranks == (8, 6, 4)
    assert layer.reconstruction_error is None
    assert not torch.allclose(layer.reconstruct(), conv.weight, atol=1e-2)
    with pytest.raises(ValueError, match="init must be one of"):
        TuckerConv2d.from_conv(conv, 0.5, init="svd")


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "kernel", "ranks"),
    [
        (64, 64, 3, (16, 16, 3)),
        (32, 128, 3, (64, 16, 9)),
        (256, 128, 3, (32, 64, 2)),
        (16, 32, 5, (16, 16, 12)),
    ],
)
def test_fresh_init_matches_conv2d_default_spread(in_channels, out_channels, kernel, ranks):
    """The reconstructed kernel's std matches nn.Conv2d's default (Kaiming-uniform, a=sqrt(5)):
    1/sqrt(3 * fan_in). Averaged over seeds; each draw has N'C'D' degrees of freedom."""
    fan_in = in_channels * kernel * kernel
    expected = 1.0 / math.sqrt(3 * fan_in)
    dense = [
        torch.nn.Conv2d(in_channels, out_channels, kernel).weight.detach().std() for _ in range(3)
    ]
    assert float(torch.stack(dense).mean()) == pytest.approx(expected, rel=0.02)
    tucker_std = []
    for seed in range(8):
        torch.manual_seed(seed)
        layer = TuckerConv2d(in_channels, out_channels, kernel, ranks)
        tucker_std.append(float(layer.reconstruct().detach().std()))
    assert sum(tucker_std) / len(tucker_std) == pytest.approx(expected, rel=0.08)
    bias_bound = 1 / math.sqrt(fan_in)
    assert float(layer.bias.detach().abs().max()) <= bias_bound
