"""Which convs of a model can be Tucker layers, rank plans for them, and decomposing a model.

model = build_model("vgg_small", 1, 10)  # in channels, classes
plan = uniform_plan(model, 0.25)              # {"block1.conv2": (8, 8, 2), ...}
decompose(model, plan, init="hooi")           # convs replaced by TuckerConv2d in place
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from lightning_modules.tucker import (
    ConvGeometry,
    InvalidRanksError,
    RankSpec,
    TuckerConv2d,
    TuckerRanks,
    ranks_from_spec,
)


class RankPlanError(ValueError):
    """A rank plan that names unknown layers or gives invalid ranks."""


@dataclass(frozen=True)
class ConvLayer:
    """A decomposable conv of a model: name, geometry, and whether it is the input conv."""

    name: str
    geometry: ConvGeometry
    is_input_layer: bool
    is_tucker: bool

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, C, kh, kw)"""
        g = self.geometry
        return (g.out_channels, g.in_channels, *g.kernel_size)


def conv_geometry(conv: nn.Conv2d | TuckerConv2d) -> ConvGeometry:
    """The geometry of a dense or Tucker conv."""
    if isinstance(conv, TuckerConv2d):
        return conv.geometry
    return ConvGeometry.of(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation,
    )  # fmt: skip


def conv_layers(model: nn.Module) -> list[ConvLayer]:
    """The convs that can be Tucker layers (groups=1, zero padding), in forward order of
    definition. The first one reads the raw image (1 or 3 channels): there is nothing to
    compress there, so default plans leave it dense."""
    layers = []
    for name, module in model.named_modules():
        is_tucker = isinstance(module, TuckerConv2d)
        if not is_tucker and not (
            isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
        ):
            continue
        layers.append(ConvLayer(name, conv_geometry(module), not layers, is_tucker))
    return layers


def skipped_convs(model: nn.Module) -> list[str]:
    """The convs that stay dense whatever the plan: grouped or depthwise (groups > 1), or
    padded other than with zeros."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros")
    ]


def uniform_plan(
    model: nn.Module, spec: RankSpec, include_input_layer: bool = False
) -> dict[str, TuckerRanks]:
    """The same rank specification (ratio, 'full' or triple) resolved for every decomposable
    conv (the input conv only if asked)."""
    return {
        layer.name: ranks_from_spec(layer.geometry, spec)
        for layer in conv_layers(model)
        if include_input_layer or not layer.is_input_layer
    }


def resolve_plan(model: nn.Module, rank_plan: Mapping[str, RankSpec]) -> dict[str, TuckerRanks]:
    """Validate a plan against the model: every name a decomposable conv, every spec valid.
    Raises RankPlanError listing every problem."""
    layers = {layer.name: layer for layer in conv_layers(model)}
    problems = []
    resolved = {}
    for name, spec in rank_plan.items():
        if name not in layers:
            problems.append(f"unknown layer {name!r}")
            continue
        try:
            resolved[name] = ranks_from_spec(layers[name].geometry, spec)
        except InvalidRanksError as error:
            problems.append(f"{name}: {error}")
    if problems:
        known = ", ".join(layers)
        raise RankPlanError("; ".join(problems) + f" (decomposable layers: {known})")
    return resolved


def decompose(
    model: nn.Module,
    rank_plan: Mapping[str, RankSpec],
    init: str = "hooi",
    implementation: str = "auto",
) -> dict[str, float | None]:
    """Replace the convs named in `rank_plan` by TuckerConv2d, in place.

    `init="hooi"` factors each trained kernel (HOOI); `"random"` initialises freshly. The plan
    is validated completely before the model is touched. A layer that is already Tucker is
    re-decomposed from its reconstructed kernel. Returns the relative reconstruction error per
    layer (None for random init).
    """
    resolved = resolve_plan(model, rank_plan)
    errors: dict[str, float | None] = {}
    for name, ranks in resolved.items():
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        conv = getattr(parent, attribute)
        if isinstance(conv, TuckerConv2d):
            conv = conv.to_conv()
        layer = TuckerConv2d.from_conv(conv, ranks, init=init, implementation=implementation)
        setattr(parent, attribute, layer)
        errors[name] = layer.reconstruction_error
    return errors


def rank_plan_of(model: nn.Module) -> dict[str, TuckerRanks]:
    """The ranks of the Tucker layers of a model (the plan that rebuilds its architecture)."""
    return {
        name: module.ranks
        for name, module in model.named_modules()
        if isinstance(module, TuckerConv2d)
    }
