"""A TuckerConv2d as plain torch modules, one per execution path: what an inference form is
made of, and what TorchScript and ONNX export without knowing this package.

    dense       one nn.Conv2d holding the rebuilt kernel W (the merged form)
    folded      1x1 (U_C^T) -> kxk conv C' -> N' -> 1x1 (U_N); a full channel rank drops its 1x1
    factorized  1x1 -> grouped kxk (the D' spatial filters per map) -> 1x1 core -> 1x1 (U_N)

Each holds the weights the layer's own path builds (ops.PATHS[...].prepare), so its outputs are
the layer's to float round-off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lightning_modules.tucker import PATHS, TuckerConv2d
from lightning_modules.tucker.ops import folds

FORMS: tuple[str, ...] = ("dense", "folded", "factorized")


def _conv(weight: Tensor, bias: Tensor | None = None, **conv_options: object) -> nn.Conv2d:
    """An nn.Conv2d holding `weight` (out x in/groups x kh x kw) and `bias`, detached copies."""
    out_channels, in_per_group, kh, kw = weight.shape
    groups = int(conv_options.pop("groups", 1))  # type: ignore[call-overload]
    conv = nn.Conv2d(
        in_per_group * groups, out_channels, (kh, kw), groups=groups, bias=bias is not None,
        device=weight.device, dtype=weight.dtype, **conv_options,  # type: ignore[arg-type]
    )  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


def _pointwise(matrix: Tensor, bias: Tensor | None = None) -> nn.Conv2d:
    return _conv(matrix[:, :, None, None], bias)


def _spatial_options(layer: TuckerConv2d) -> dict[str, object]:
    return {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}


@torch.no_grad()
def dense_form(layer: TuckerConv2d) -> nn.Conv2d:
    (kernel,) = PATHS["reconstructed"].prepare(layer.factors, layer.geometry)
    return _conv(kernel, layer.bias, **_spatial_options(layer))


@torch.no_grad()
def folded_form(layer: TuckerConv2d) -> nn.Module:
    factors = layer.factors
    (kernel,) = PATHS["folded"].prepare(factors, layer.geometry)
    fold_in, fold_out = folds(factors)
    parts: list[nn.Module] = [] if fold_in else [_pointwise(factors.in_factor.t())]
    parts.append(_conv(kernel, layer.bias if fold_out else None, **_spatial_options(layer)))
    if not fold_out:
        parts.append(_pointwise(factors.out_factor, layer.bias))
    return parts[0] if len(parts) == 1 else nn.Sequential(*parts)


@torch.no_grad()
def factorized_form(layer: TuckerConv2d) -> nn.Sequential:
    factors = layer.factors
    filters, *tail = PATHS["factorized"].prepare(factors, layer.geometry)
    in_rank = factors.core.shape[1]
    parts: list[nn.Module] = [
        _pointwise(factors.in_factor.t()),
        _conv(filters, None, groups=in_rank, **_spatial_options(layer)),
    ]
    if len(tail) == 1:
        parts.append(_pointwise(tail[0], layer.bias))
    else:
        parts += [_pointwise(tail[0]), _pointwise(tail[1], layer.bias)]
    return nn.Sequential(*parts)


BUILDERS: dict[str, Callable[[TuckerConv2d], nn.Module]] = {
    "dense": dense_form,
    "folded": folded_form,
    "factorized": factorized_form,
}


def layer_form(layer: TuckerConv2d, form: str) -> nn.Module:
    """`layer` as plain modules in the named form (see FORMS)."""
    if form not in BUILDERS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    return BUILDERS[form](layer)
