"""The inference form: Tucker layers as plain torch modules, with the Tucker model's outputs;
and the kernel cache of a TuckerConv2d that runs without autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules import inference_form
from lightning_modules.inference import FORMS, choose_forms, layer_form
from lightning_modules.nets import build_model, decompose, uniform_plan
from lightning_modules.tucker import PATHS, TuckerConv2d

# Float32 outputs of a few ops in another order: a few ulp of logits of order 1.
TOLERANCE = 1e-4


def _tucker_net(ratio: float = 0.5) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("vgg_small", 1, 10, width=16)
    decompose(model, uniform_plan(model, ratio), init="hooi")
    return model.eval()


def _plain(module: nn.Module) -> bool:
    return not any(isinstance(m, TuckerConv2d) for m in module.modules())


@pytest.mark.parametrize("form", FORMS)
def test_each_form_computes_the_tucker_model(form):
    model = _tucker_net()
    x = torch.randn(5, 1, 8, 8)
    fast = inference_form(model, x, forms=(form,))
    assert _plain(fast) and set(fast.tucker_forms.values()) == {form}
    other = torch.randn(3, 1, 8, 8)  # not the input it was chosen on
    with torch.no_grad():
        torch.testing.assert_close(fast(other), model(other), atol=TOLERANCE, rtol=TOLERANCE)
    assert any(isinstance(m, TuckerConv2d) for m in model.modules()), "the model was changed"


@pytest.mark.parametrize(
    ("ranks", "expected_convs"),
    [((8, 4, 9), 3), ((16, 4, 9), 2), ((8, 16, 9), 2), ((16, 16, 9), 1)],
)
def test_folded_form_drops_the_1x1_of_a_full_channel_rank(ranks, expected_convs):
    torch.manual_seed(0)
    layer = TuckerConv2d(16, 16, 3, ranks, padding=1).eval()
    folded = layer_form(layer, "folded")
    assert sum(isinstance(m, nn.Conv2d) for m in folded.modules()) == expected_convs
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), layer(x), atol=TOLERANCE, rtol=TOLERANCE)


def test_the_fastest_form_is_chosen_by_timing_and_outputs_agree():
    model = _tucker_net(0.25)
    x = torch.randn(4, 1, 8, 8)
    fast = inference_form(model, x)
    assert _plain(fast) and not fast.training
    assert set(fast.tucker_forms) == {n for n, m in model.named_modules()
                                      if isinstance(m, TuckerConv2d)}  # fmt: skip
    assert set(fast.tucker_forms.values()) <= set(FORMS)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=TOLERANCE, rtol=TOLERANCE)


def test_a_layer_the_example_never_reaches_stays_dense():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = TuckerConv2d(4, 4, 3, (2, 2, 3), padding=1)
            self.unused = TuckerConv2d(4, 4, 3, (2, 2, 3), padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    model = Branchy()
    fast = inference_form(model, torch.randn(1, 4, 5, 5), forms=("folded",))
    assert fast.tucker_forms == {"used": "folded", "unused": "dense"}
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(fast.unused(x), model.unused(x), atol=TOLERANCE,
                                   rtol=TOLERANCE)  # fmt: skip


def test_unknown_forms_are_refused():
    with pytest.raises(ValueError, match="forms must be"):
        inference_form(_tucker_net(), torch.randn(1, 1, 8, 8), forms=("merged",))


@pytest.mark.parametrize("implementation", ["reconstructed", "folded", "factorized", "auto"])
def test_an_eval_layer_builds_its_kernel_once_until_an_optimiser_step(implementation):
    torch.manual_seed(0)
    layer = TuckerConv2d(8, 8, 3, (4, 4, 3), padding=1, implementation=implementation)
    x = torch.randn(2, 8, 6, 6)
    layer.eval()
    with torch.no_grad():
        first = layer(x)
        cached = {name: tuple(t for t in built) for name, built in layer._prepared_cache.items()}
        assert cached, "nothing was cached"
        again = layer(x)
        for name, built in layer._prepared_cache.items():
            assert all(a is b for a, b in zip(built, cached[name], strict=True)), name
    torch.testing.assert_close(again, first, atol=0, rtol=0)

    layer.train()
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(x).square().mean().backward()
    optimiser.step()
    layer.eval()
    with torch.no_grad():
        after = layer(x)
        chosen = next(iter(layer._prepared_cache))
        # The first built tensor of every path is made from the parameters (a kernel, the
        # repeated filters), never one of them.
        assert layer._prepared_cache[chosen][0] is not cached[chosen][0], "not rebuilt"
        expected = PATHS["reconstructed"].forward(x, layer.factors, layer.bias, layer.geometry)
    torch.testing.assert_close(after, expected, atol=TOLERANCE, rtol=TOLERANCE)
    assert not torch.allclose(after, first, atol=1e-3), "the step changed nothing"


def test_a_layer_with_autograd_keeps_no_kernel():
    layer = TuckerConv2d(8, 8, 3, (4, 4, 3), padding=1, implementation="reconstructed")
    out = layer(torch.randn(2, 8, 6, 6))
    out.sum().backward()
    assert layer._prepared_cache == {} and layer.core.grad is not None


def test_several_batch_sizes_give_one_form_that_only_goes_tucker_where_it_pays_at_all():
    model = _tucker_net(0.25)
    examples = [torch.randn(1, 1, 8, 8), torch.randn(16, 1, 8, 8)]
    fast = inference_form(model, examples)
    assert _plain(fast)
    for name, choice in choose_forms(model, examples).items():
        assert len(choice.seconds) == 2, name
        if choice.form != "dense":
            assert all(s[choice.form] < s["dense"] for s in choice.seconds), (name, choice)
    with torch.no_grad():
        for x in examples:
            torch.testing.assert_close(fast(x), model(x), atol=TOLERANCE, rtol=TOLERANCE)
