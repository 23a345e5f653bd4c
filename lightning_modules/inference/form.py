"""The inference form of a network: a copy in which every TuckerConv2d is replaced by plain torch
modules, each layer in whichever form (layer_forms.FORMS) ran fastest on the example input.

    fast = inference_form(model, example_input)   # eval mode, same outputs to round-off
    fast.tucker_forms                              # {"block2.conv1": "folded", ...}
    fast = inference_form(model, [batch_of_1, batch_of_64])   # one form for both sizes

The choice is made by timing every form on the input each layer sees when the model runs on
`example_input`: on its device, dtype and batch size. Given several examples (the batch sizes
a model is deployed at), a layer takes a Tucker form only if it runs faster than dense on every
one of them, the one with the smallest mean time relative to dense: one file then serves every
batch size without a layer that slows any of them. FLOP counts never decide: on a 2-core CPU
the form with the fewest multiply-adds (factorized) was the slowest in 9 of 12 cases of the
source's benchmark, and a 1x1-heavy layer often runs fastest dense. A layer whose Tucker forms
are all slower than its rebuilt dense kernel stays dense, so no layer is slower than the
network it came from by more than the timing noise.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_modules.inference.layer_forms import FORMS, layer_form
from lightning_modules.inference.timing import time_modules
from lightning_modules.tucker import TuckerConv2d

# Each candidate form of a layer is timed on that layer's own input: small ops, so a few more
# runs than a whole model's timing cost little and steady the choice.
_LAYER_RUNS = 7
_LAYER_WARMUP = 2
_NETWORK_RUNS = 7
# A form that beats dense by at least this much on every example is a clear win: the second
# whole-network candidate keeps those layers only.
CLEAR_WIN = 0.8


@dataclass(frozen=True)
class LayerChoice:
    """The form a layer took, and the median seconds of every form timed, per example."""

    form: str
    seconds: list[dict[str, float]]


def _pick(seconds: list[dict[str, float]]) -> str:
    """The fastest form on one example; on several, dense unless a form beats it on every one
    (then the one with the smallest mean time relative to dense's)."""
    if len(seconds) == 1 or "dense" not in seconds[0]:
        total = {form: sum(s[form] for s in seconds) for form in seconds[0]}
        return min(total, key=total.__getitem__)
    relative = {
        form: [s[form] / s["dense"] for s in seconds] for form in seconds[0] if form != "dense"
    }
    winners = {form: ratios for form, ratios in relative.items() if max(ratios) < 1.0}
    if not winners:
        return "dense"
    return min(winners, key=lambda form: statistics.mean(winners[form]))


def _examples(example_input: Tensor | Sequence[Tensor]) -> list[Tensor]:
    examples = [example_input] if isinstance(example_input, Tensor) else list(example_input)
    if not examples:
        raise ValueError("inference_form needs at least one example input")
    return examples


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
    model: nn.Module, example_input: Tensor | Sequence[Tensor], forms: Sequence[str] = FORMS
) -> dict[str, LayerChoice]:
    """Per TuckerConv2d of `model` (by name), the fastest of `forms` on its input(s), timed
    (see the module's docstring for several examples)."""
    model.eval()
    inputs = [_layer_inputs(model, example) for example in _examples(example_input)]
    choices = {}
    for name, module in model.named_modules():
        if not isinstance(module, TuckerConv2d) or name not in inputs[0]:
            continue
        candidates = {form: layer_form(module, form) for form in forms}
        seconds = [
            time_modules(candidates, seen[name], _LAYER_RUNS, _LAYER_WARMUP) for seen in inputs
        ]
        choices[name] = LayerChoice(_pick(seconds), seconds)
    return choices


def _replace(model: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, replacement)


def _built(model: nn.Module, chosen: dict[str, str]) -> nn.Module:
    """A copy of `model` with each TuckerConv2d replaced by its form in `chosen`."""
    built = copy.deepcopy(model).eval()
    for name, module in list(built.named_modules()):
        if isinstance(module, TuckerConv2d):
            _replace(built, name, layer_form(module, chosen[name]))
    built.tucker_forms = dict(chosen)  # type: ignore[assignment]
    return built


def _clear_wins(choices: dict[str, LayerChoice], chosen: dict[str, str]) -> dict[str, str]:
    """`chosen` with only the layers whose form beat dense by CLEAR_WIN on every example."""
    kept = dict(chosen)
    for name, choice in choices.items():
        form = choice.form
        if form != "dense" and any(s[form] > CLEAR_WIN * s["dense"] for s in choice.seconds):
            kept[name] = "dense"
    return kept


def _whole_network(candidates: list[nn.Module], examples: list[Tensor]) -> nn.Module:
    """The candidate network (the last is all dense) with the smallest mean time relative to
    the all-dense one, among those no slower than it on any example: a layer timed alone can
    win and still lose in the network (caches, memory traffic between ops), and this is the
    check that no deployed form is slower than its dense network."""
    modules = {str(index): candidate for index, candidate in enumerate(candidates)}
    dense_key = str(len(candidates) - 1)
    relative: dict[str, list[float]] = {key: [] for key in modules}
    for example in examples:
        seconds = time_modules(modules, example, _NETWORK_RUNS, _LAYER_WARMUP)
        for key in modules:
            relative[key].append(seconds[key] / seconds[dense_key])
    allowed = [key for key in modules if max(relative[key]) <= 1.0]
    best = min(allowed, key=lambda key: statistics.mean(relative[key]))
    return modules[best]


def inference_form(
    model: nn.Module, example_input: Tensor | Sequence[Tensor], forms: Sequence[str] = FORMS
) -> nn.Module:
    """A copy of `model`, in eval mode, whose TuckerConv2d layers are plain torch modules in
    the fastest of `forms` on `example_input` (a batch on the deployment device and dtype, or
    a list of them: one per batch size deployed at). The layers' choices are then checked as
    a whole network, against the same network with every layer dense (and against keeping only
    the clear wins): whichever runs fastest, never slower than all dense on any example, is
    returned. The copy's `tucker_forms` maps each replaced layer to its form. A layer the
    model never ran on the example (an unused branch) takes the dense form."""
    unknown = [form for form in forms if form not in FORMS]
    if unknown or not forms:
        raise ValueError(f"forms must be some of {FORMS}, got {list(forms)}")
    examples = _examples(example_input)
    model = copy.deepcopy(model).eval()
    choices = choose_forms(model, examples, forms)
    names = [name for name, module in model.named_modules() if isinstance(module, TuckerConv2d)]
    chosen = {name: choices[name].form if name in choices else "dense" for name in names}
    if "dense" not in forms or all(form == "dense" for form in chosen.values()):
        return _built(model, chosen)  # nothing to check against
    plans = [chosen, _clear_wins(choices, chosen), dict.fromkeys(names, "dense")]
    unique = [plan for index, plan in enumerate(plans) if plan not in plans[:index]]
    return _whole_network([_built(model, plan) for plan in unique], examples)
