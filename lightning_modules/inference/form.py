"""The inference form of a network: a copy in which every TuckerConv2d is replaced by plain torch
modules, each layer in whichever form (layer_forms.FORMS) ran fastest on the example input.

    fast = inference_form(model, example_input)   # eval mode, same outputs to round-off
    fast.tucker_forms                              # {"block2.conv1": "folded", ...}

The choice is made by timing every form on the input each layer sees when the model runs on
`example_input`: on its device, dtype and batch size. FLOP counts never decide: on a 2-core CPU
the form with the fewest multiply-adds (factorized) was the slowest in 9 of 12 cases of the
source's benchmark, and a 1x1-heavy layer often runs fastest dense. A layer whose Tucker forms
are all slower than its rebuilt dense kernel stays dense, so no layer is slower than the
network it came from by more than the timing noise.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_modules.inference.layer_forms import FORMS, layer_form
from lightning_modules.inference.timing import time_modules
from lightning_modules.tucker import TuckerConv2d

# Each candidate form of a layer is timed on that layer's own input: small ops, so a few more
# runs than a whole model's timing cost little and steady the choice.
_LAYER_RUNS = 9
_LAYER_WARMUP = 2


@dataclass(frozen=True)
class LayerChoice:
    """The form a layer took, and the median seconds of every form timed."""

    form: str
    seconds: dict[str, float]


def _layer_inputs(model: nn.Module, example_input: Tensor) -> dict[str, Tensor]:
    """The input every TuckerConv2d of `model` receives when it runs on `example_input`."""
    seen: dict[str, Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, TuckerConv2d):

            def keep(_module: nn.Module, inputs: tuple, name: str = name) -> None:
                seen.setdefault(name, inputs[0].detach())

            handles.append(module.register_forward_pre_hook(keep))
    try:
        with torch.inference_mode():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def choose_forms(
    model: nn.Module, example_input: Tensor, forms: Sequence[str] = FORMS
) -> dict[str, LayerChoice]:
    """Per TuckerConv2d of `model` (by name), the fastest of `forms` on its input, timed."""
    model.eval()
    inputs = _layer_inputs(model, example_input)
    choices = {}
    for name, module in model.named_modules():
        if not isinstance(module, TuckerConv2d) or name not in inputs:
            continue
        candidates = {form: layer_form(module, form) for form in forms}
        seconds = time_modules(candidates, inputs[name], _LAYER_RUNS, _LAYER_WARMUP)
        choices[name] = LayerChoice(min(seconds, key=seconds.__getitem__), seconds)
    return choices


def _replace(model: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, replacement)


def inference_form(
    model: nn.Module, example_input: Tensor, forms: Sequence[str] = FORMS
) -> nn.Module:
    """A copy of `model`, in eval mode, whose TuckerConv2d layers are plain torch modules in
    the fastest of `forms` on `example_input` (a batch on the deployment device and dtype).
    The copy's `tucker_forms` maps each replaced layer to its form. A layer the model never
    ran on the example (an unused branch) takes the dense form."""
    unknown = [form for form in forms if form not in FORMS]
    if unknown or not forms:
        raise ValueError(f"forms must be some of {FORMS}, got {list(forms)}")
    fast = copy.deepcopy(model).eval()
    choices = choose_forms(fast, example_input, forms)
    chosen: dict[str, str] = {}
    for name, module in list(fast.named_modules()):
        if isinstance(module, TuckerConv2d):
            choice = choices.get(name)
            chosen[name] = choice.form if choice is not None else "dense"
            _replace(fast, name, layer_form(module, chosen[name]))
    fast.tucker_forms = chosen  # type: ignore[assignment]
    return fast
