"""Parameters and multiply-adds of a whole (dense or Tucker) model, actual and dense-equivalent."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lightning_modules.nets.decompose import conv_geometry
from lightning_modules.nets.meta_trace import input_sizes
from lightning_modules.tucker import TuckerConv2d
from lightning_modules.tucker.cost import dense_flops


@dataclass(frozen=True)
class ModelCost:
    """Parameters and multiply-adds per image, actual and dense-equivalent (every Tucker layer
    counted as the conv it replaces). FLOPs count convs and linear layers."""

    params: int
    dense_params: int
    flops: int
    dense_flops: int

    @property
    def compression(self) -> float:
        return self.dense_params / self.params

    @property
    def flops_reduction(self) -> float:
        return self.dense_flops / self.flops


def model_cost(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelCost:
    """Count parameters, and the multiply-adds of the layers one image passes through (traced on
    the meta device, so nothing is computed or timed)."""
    params = sum(p.numel() for p in model.parameters())
    dense_params = params
    flops = dense = 0
    sizes = input_sizes(model, input_shape, (TuckerConv2d, nn.Conv2d, nn.Linear))
    for name, module in model.named_modules():
        if isinstance(module, TuckerConv2d):
            dense_params += module.dense_param_count() - module.param_count()
        if name not in sizes:
            continue
        if isinstance(module, TuckerConv2d):
            flops += module.flops(sizes[name])
            dense += module.dense_flops(sizes[name])
        elif isinstance(module, nn.Conv2d):
            layer_flops = dense_flops(conv_geometry(module), sizes[name]) // module.groups
            flops, dense = flops + layer_flops, dense + layer_flops
        else:  # nn.Linear
            layer_flops = module.in_features * module.out_features
            flops, dense = flops + layer_flops, dense + layer_flops
    return ModelCost(params, dense_params, flops, dense)
