"""Every execution path of TuckerConv2d computes conv2d with the reconstructed kernel."""

import pytest
import tensorly
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from lightning_modules.tucker import IMPLEMENTATIONS, TuckerConv2d, make_feasible
from lightning_modules.tucker import autotune as tucker_autotune


@st.composite
def layers_and_inputs(draw):
    in_channels = draw(st.integers(1, 6))
    out_channels = draw(st.integers(1, 6))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if stride == (1, 1) and draw(st.booleans()):
        padding = draw(st.sampled_from(["same", "valid"]))
    else:
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dims = (out_channels, in_channels, kernel[0] * kernel[1])
    wanted = [draw(st.integers(1, dim)) for dim in dims]
    ranks, _ = make_feasible(wanted, dims)
    pad = (0, 0) if isinstance(padding, str) else padding
    # smallest input that leaves at least one output pixel
    hw = [max(1, dilation[i] * (kernel[i] - 1) + 1 - 2 * pad[i]) for i in range(2)]
    hw = [size + draw(st.integers(0, 4)) for size in hw]
    batch = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    return (in_channels, out_channels, kernel, ranks, stride, padding, dilation, bias), (
        batch,
        in_channels,
        *hw,
    )


@given(spec=layers_and_inputs(), seed=st.integers(0, 2**16))
def test_every_path_equals_dense_conv_of_reconstructed_kernel(spec, seed):
    (in_channels, out_channels, kernel, ranks, stride, padding, dilation, bias), shape = spec
    torch.manual_seed(seed)
    layer = TuckerConv2d(
        in_channels,
        out_channels,
        kernel,
        ranks,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=bias,
        dtype=torch.float64,
    )
    x = torch.randn(shape, dtype=torch.float64)
    expected = F.conv2d(x, layer.reconstruct(), layer.bias, stride, padding, dilation)
    assert layer.reconstruct().shape == (out_channels, in_channels, *kernel)
    for implementation in (*IMPLEMENTATIONS, "auto"):
        layer.implementation = implementation
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_tensorly_tucker_to_tensor_equals_reconstruct():
    layer = TuckerConv2d(7, 5, (3, 2), (4, 6, 3), dtype=torch.float64)
    factors = [
        f.detach().numpy() for f in (layer.out_factor, layer.in_factor, layer.spatial_factor)
    ]
    with tensorly.backend_context("numpy", local_threadsafe=True):
        expected = tensorly.tucker_to_tensor((layer.core.detach().numpy(), factors))
    rebuilt = layer.reconstruct().detach().reshape(5, 7, 6)
    torch.testing.assert_close(rebuilt, torch.from_numpy(expected))


def test_auto_times_once_per_shape_and_caches_the_choice():
    tucker_autotune.clear_cache()
    layer = TuckerConv2d(8, 8, 3, (4, 4, 3), padding=1)
    x = torch.randn(2, 8, 10, 10)
    layer(x)
    layer(x)
    assert len(tucker_autotune.cached_choices()) == 1
    layer(torch.randn(2, 8, 12, 12))  # new input shape: timed again
    with torch.no_grad():  # forward-only timing is a separate decision
        layer(x)
    choices = tucker_autotune.cached_choices()
    assert len(choices) == 3
    assert set(choices.values()) <= set(IMPLEMENTATIONS)
    # Timing must not leave gradients behind on the layer's parameters.
    assert all(p.grad is None for p in layer.parameters())


def test_auto_keys_its_choice_by_the_autocast_state():
    # bf16 autocast runs other kernels than fp32: a choice timed in one state must not be
    # reused in the other.
    tucker_autotune.clear_cache()
    layer = TuckerConv2d(8, 8, 3, (4, 4, 3), padding=1)
    x = torch.randn(2, 8, 10, 10)
    layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
        assert tucker_autotune.autocast_state("cpu") == (True, torch.bfloat16)
    assert tucker_autotune.autocast_state("cpu") == (False, None)
    states = {key[-1] for key in tucker_autotune.cached_choices()}
    assert states == {(False, None), (True, torch.bfloat16)}


def test_a_layer_reuses_its_own_choice_without_timing_again():
    tucker_autotune.clear_cache()
    layer = TuckerConv2d(8, 8, 3, (4, 4, 3), padding=1)
    x = torch.randn(2, 8, 10, 10)
    layer(x)
    tucker_autotune.clear_cache()
    layer(x)  # the layer's own memo answers: nothing is timed or cached anew
    assert tucker_autotune.cached_choices() == {}
    twin = TuckerConv2d(8, 8, 3, (4, 4, 3), padding=1)
    twin(x)  # a new layer times, and fills the shared cache
    assert len(tucker_autotune.cached_choices()) == 1


def test_layer_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="groups=1 only"):
        TuckerConv2d(8, 8, 3, (4, 4, 3), groups=2)
    with pytest.raises(ValueError, match="padding_mode='zeros' only"):
        TuckerConv2d(8, 8, 3, (4, 4, 3), padding_mode="reflect")
    with pytest.raises(ValueError, match="implementation must be one of"):
        TuckerConv2d(8, 8, 3, (4, 4, 3), implementation="fast")
    with pytest.raises(ValueError, match="strided"):
        TuckerConv2d(8, 8, 3, (4, 4, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="N' <= C'\\*D'"):
        TuckerConv2d(8, 8, 3, (8, 2, 3))


def test_to_conv_and_state_dict_round_trip():
    torch.manual_seed(0)
    layer = TuckerConv2d(6, 4, 3, (2, 3, 4), stride=2, padding=1)
    x = torch.randn(2, 6, 9, 9)
    torch.testing.assert_close(layer.to_conv()(x), layer(x))
    copy = TuckerConv2d(6, 4, 3, (2, 3, 4), stride=2, padding=1)
    copy.load_state_dict(layer.state_dict())
    torch.testing.assert_close(copy(x), layer(x))
    assert set(layer.state_dict()) == {"core", "out_factor", "in_factor", "spatial_factor", "bias"}
