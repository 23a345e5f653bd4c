"""Model factory, decomposable convs, rank plans and cost totals."""

import pytest
import torch

from lightning_modules.nets import (
    MODELS,
    RankPlanError,
    UnknownModelError,
    build_model,
    conv_layers,
    decompose,
    model_cost,
    rank_plan_of,
    skipped_convs,
    uniform_plan,
)
from lightning_modules.tucker import TuckerConv2d


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 32)])
def test_every_model_builds_for_small_and_cifar_images(name, channels, size):
    model = build_model(name, channels, 7)
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)
    layers = conv_layers(model)
    assert layers[0].is_input_layer and layers[0].shape[1] == channels
    assert not any(layer.is_input_layer for layer in layers[1:])


def test_layer_names_are_stable_and_readable():
    vgg = [layer.name for layer in conv_layers(build_model("vgg_small", 1, 10))]
    assert vgg == [f"block{b}.conv{c}" for b in (1, 2, 3) for c in (1, 2)]
    resnet = [layer.name for layer in conv_layers(build_model("resnet8", 3, 10))]
    assert resnet[:3] == ["stem.conv", "stage1.block1.conv1", "stage1.block1.conv2"]
    assert "stage2.block1.shortcut.conv" in resnet


def test_unknown_model_and_bad_options():
    with pytest.raises(UnknownModelError, match="known models: vgg_small"):
        build_model("vgg19", 3, 10)
    with pytest.raises(UnknownModelError, match="bad options"):
        build_model("vgg_small", 3, 10, depth=4)


def test_uniform_plan_skips_the_input_conv():
    model = build_model("vgg_small", 1, 10, width=16)
    plan = uniform_plan(model, 0.25)
    assert "block1.conv1" not in plan
    assert plan["block3.conv2"] == (16, 16, 2)
    assert "block1.conv1" in uniform_plan(model, 0.25, include_input_layer=True)


def test_decompose_validates_the_whole_plan_before_changing_anything():
    model = build_model("vgg_small", 1, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RankPlanError) as error:
        decompose(model, {"block2.conv1": 0.5, "block9.conv1": 0.5, "block3.conv2": (200, 2, 2)})
    assert "unknown layer 'block9.conv1'" in str(error.value)
    assert "block3.conv2" in str(error.value) and "N' <= 128" in str(error.value)
    assert not any(isinstance(m, TuckerConv2d) for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_decompose_full_ranks_keeps_predictions_and_reports_errors():
    torch.manual_seed(0)
    model = build_model("resnet8", 3, 10).eval()
    x = torch.randn(4, 3, 16, 16)
    expected = model(x)
    errors = decompose(model, uniform_plan(model, "full"), init="hooi")
    assert all(error < 1e-5 for error in errors.values())
    assert sum(isinstance(m, TuckerConv2d) for m in model.modules()) == len(errors)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    assert rank_plan_of(model) == uniform_plan(build_model("resnet8", 3, 10), "full")


def test_model_cost_dense_and_decomposed():
    model = build_model("vgg_small", 1, 10, width=8)
    dense = model_cost(model, (1, 8, 8))
    assert dense.params == sum(p.numel() for p in model.parameters())
    assert dense.compression == 1.0 and dense.flops == dense.dense_flops
    # conv MACs by hand: 8x8 maps in block1, 4x4 in block2, 2x2 in block3, plus the classifier
    convs = [(8, 1, 64), (8, 8, 64), (16, 8, 16), (16, 16, 16), (32, 16, 4), (32, 32, 4)]
    assert dense.flops == sum(n * c * 9 * hw for n, c, hw in convs) + 32 * 10
    decompose(model, uniform_plan(model, 0.5), init="random")
    tucker = model_cost(model, (1, 8, 8))
    assert tucker.dense_params == dense.params and tucker.dense_flops == dense.flops
    assert tucker.params == sum(p.numel() for p in model.parameters()) < dense.params
    assert tucker.compression > 2 and tucker.flops_reduction > 1.5


def test_mobilenet_keeps_depthwise_convs_dense_and_trains_a_step():
    torch.manual_seed(0)
    model = build_model("mobilenet_v2_small", 3, 10, width=8)
    decomposable = [layer.name for layer in conv_layers(model)]
    depthwise = skipped_convs(model)
    assert depthwise and all(name.endswith(".depthwise") for name in depthwise)
    assert not set(depthwise) & set(decomposable)
    for name in depthwise:
        conv = model.get_submodule(name)
        assert conv.groups == conv.in_channels == conv.out_channels
        with pytest.raises(ValueError, match="groups=1 only"):
            TuckerConv2d.from_conv(conv, 0.5)
    # Past the 3x3 stem, every decomposable conv is a 1x1 (expand or project).
    assert decomposable[0] == "stem.conv"
    assert all(layer.shape[2:] == (1, 1) for layer in conv_layers(model)[1:])
    decompose(model, uniform_plan(model, 0.5), init="hooi")
    assert set(rank_plan_of(model)) == set(decomposable[1:])
    assert all(isinstance(model.get_submodule(name), torch.nn.Conv2d) for name in depthwise)

    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model.train()(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_mobilenet_residual_only_where_shapes_match_and_bad_options():
    model = build_model("mobilenet_v2_small", 1, 10, width=4, blocks_per_stage=3)
    residual = {name for name, m in model.named_modules() if getattr(m, "residual", False)}
    assert residual == {"stage1.block1", "stage2.block2", "stage2.block3", "stage3.block2",
                        "stage3.block3"}  # fmt: skip
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(UnknownModelError, match="expansion must be a whole number"):
        build_model("mobilenet_v2_small", 3, 10, expansion=0)
