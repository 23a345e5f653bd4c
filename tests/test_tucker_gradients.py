"""Autograd through every path against the closed-form mode-n gradients (docs/design.md,
"Gradients") and finite differences. The source paper's closed forms (Kronecker products times
all-ones vectors) sum Jacobian columns; these are the correct ones."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from lightning_modules.tucker import IMPLEMENTATIONS, TuckerConv2d


def closed_form_gradients(weight_grad, core, out_factor, in_factor, spatial_factor):
    """dL/dG = Wbar x1 U_N^T x2 U_C^T x3 U_D^T;  dL/dU_N = Wbar_(1) [(G x2 U_C x3 U_D)_(1)]^T,
    likewise for U_C and U_D (Wbar = dL/dW as N x C x D)."""
    wbar = weight_grad.reshape(weight_grad.shape[0], weight_grad.shape[1], -1)
    d_core = torch.einsum("ncs,na,cb,sk->abk", wbar, out_factor, in_factor, spatial_factor)
    without_out = torch.einsum("abk,cb,sk->acs", core, in_factor, spatial_factor)
    without_in = torch.einsum("abk,na,sk->nbs", core, out_factor, spatial_factor)
    without_spatial = torch.einsum("abk,na,cb->nck", core, out_factor, in_factor)
    d_out = wbar.reshape(wbar.shape[0], -1) @ without_out.reshape(without_out.shape[0], -1).T
    d_in = torch.einsum("ncs,nbs->cb", wbar, without_in)
    d_spatial = torch.einsum("ncs,nck->sk", wbar, without_spatial)
    return d_core, d_out, d_in, d_spatial


@pytest.mark.parametrize("ranks", [(3, 4, 5), (6, 4, 2), (2, 5, 9)])  # (6, ., .): N' = N merge
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_autograd_matches_closed_form_mode_gradients(implementation, ranks):
    torch.manual_seed(1)
    layer = TuckerConv2d(
        5, 6, 3, ranks, stride=2, padding=1, implementation=implementation, dtype=torch.float64
    )
    x = torch.randn(3, 5, 9, 9, dtype=torch.float64)
    upstream = torch.randn(3, 6, 5, 5, dtype=torch.float64)

    (upstream * layer(x)).sum().backward()

    # Wbar from the dense conv with the reconstructed kernel as a leaf.
    weight = layer.reconstruct().detach().requires_grad_()
    (upstream * F.conv2d(x, weight, layer.bias.detach(), 2, 1)).sum().backward()
    expected = closed_form_gradients(
        weight.grad, layer.core, layer.out_factor, layer.in_factor, layer.spatial_factor
    )
    actual = (layer.core.grad, layer.out_factor.grad, layer.in_factor.grad,
              layer.spatial_factor.grad)  # fmt: skip
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("ranks", [(2, 3, 2), (4, 3, 4)])
def test_gradcheck_float64(implementation, ranks):
    torch.manual_seed(3)
    layer = TuckerConv2d(
        3, 4, (3, 2), ranks, padding=(1, 0), dilation=(1, 2), implementation=implementation,
        dtype=torch.float64,
    )  # fmt: skip
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in layer.named_parameters()]
    params = tuple(layer.parameters())

    def as_function(inputs, *weights):
        return functional_call(layer, dict(zip(names, weights, strict=True)), (inputs,))

    assert torch.autograd.gradcheck(as_function, (x, *params))
