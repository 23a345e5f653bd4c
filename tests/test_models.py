"""Model factory, decomposable convs, rank plans and cost totals; models from torchvision and
timm, and their published weights in the local caches."""

import argparse
import hashlib
import importlib
import os
import pickle
import sys
from pathlib import Path

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
from lightning_modules.nets.optional import ModelPackageError
from lightning_modules.nets.pretrained import PretrainedWeightsError
from lightning_modules.nets.timm_models import cached_weights, hub_filenames
from lightning_modules.nets.torchvision_models import replace_heads, weights_only_loads
from lightning_modules.nets.weight_caches import (
    find_in_hf_cache,
    hf_hub_cache,
    hf_hub_file,
    torch_hub_file,
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


# --- models from packages (torchvision, timm) and their published weights -------------------
# Both packages are optional (pyproject's vision and timm extras) and, beside the CPU torch of the
# development machine, torchvision's wheels do not load (nor does timm, which imports it). The
# error paths, the caches' layouts and the head swap run here; building real models skips.


def _why_not_importable(package: str) -> str | None:
    try:
        importlib.import_module(package)
    except Exception as error:  # missing, or a build for another torch ("torchvision::nms")
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__
    return None


NO_TORCHVISION = _why_not_importable("torchvision")
NO_TIMM = _why_not_importable("timm")
NEEDS_TORCHVISION = pytest.mark.skipif(
    NO_TORCHVISION is not None,
    reason=f"needs a torchvision that loads beside this torch (here: {NO_TORCHVISION})",
)
NEEDS_TIMM = pytest.mark.skipif(
    NO_TIMM is not None, reason=f"needs a timm that loads beside this torch (here: {NO_TIMM})"
)
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
TIMM_RESNET18 = "timm/resnet18.a1_in1k"


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and len(message) < 600, message
    return message


@pytest.mark.parametrize(
    ("spec", "package", "extra", "missing"),
    [("torchvision:resnet18", "torchvision", "vision", NO_TORCHVISION),
     ("timm:resnet18", "timm", "timm", NO_TIMM)],
)  # fmt: skip
@pytest.mark.parametrize("pretrained", [False, True])
def test_a_package_model_where_the_package_does_not_load_says_what_to_install(
    spec, package, extra, missing, pretrained
):
    if missing is None:
        pytest.skip(f"{package} loads here; this checks the error without it")
    with pytest.raises(ModelPackageError) as error:
        build_model(spec, 3, 10, pretrained=pretrained)
    assert isinstance(error.value, UnknownModelError)  # a user error: one line, exit 2
    message = _one_line(error)
    source, _, name = spec.partition(":")
    assert message.startswith(f"model {source}: {name} needs {package}")
    assert f"pip install 'tucker-sweep[{extra}]'" in message
    if "ModuleNotFoundError" not in missing:  # installed, but built for another torch
        assert "does not load beside torch" in message and missing in message


# A package that fails while it is imported, as torchvision's CUDA wheels fail beside a CPU torch
# (and timm with them): written into the test's folder, ahead of any installed one on sys.path.
# It imitates none of timm's API, only the failure.
BROKEN_PACKAGES = {
    "raises": ("raise RuntimeError('operator torchvision::nms does not exist')\n",
               "needs timm, which is installed but does not load beside torch "
               f"{torch.__version__} (RuntimeError: operator torchvision::nms does not exist)"),
    "lacks a dependency": ("import tucker_sweep_test_absent_dependency\n",
                           "needs timm: it is installed but needs "
                           "tucker_sweep_test_absent_dependency, which is not"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN_PACKAGES))
def test_a_package_that_fails_at_import_is_named_with_its_error(tmp_path, monkeypatch, case):
    source, expected = BROKEN_PACKAGES[case]
    (tmp_path / "timm").mkdir()
    (tmp_path / "timm" / "__init__.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "timm", raising=False)
    with pytest.raises(ModelPackageError) as error:
        build_model("timm:resnet18", 3, 10)
    message = _one_line(error)
    assert expected in message and "pip install 'tucker-sweep[timm]'" in message


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [("timm:resnet18", {"pretrained": "yes"}, "pretrained must be true or false, got 'yes'"),
     ("torchvision:resnet18", {"pretrained": 1}, "pretrained must be true or false, got 1"),
     ("torchvision:resnet18", {"weights": "DEFAULT"},
      "option 'weights' is not passed on: model.pretrained: true reads the DEFAULT weights"),
     ("timm:hf-hub:timm/resnet18.a1_in1k", {}, "not a hub or folder reference")],
)  # fmt: skip
def test_package_model_options_refused_before_the_package_is_imported(spec, options, message):
    # Checked first, so these hold whether or not the package loads here.
    with pytest.raises(UnknownModelError) as error:
        build_model(spec, 3, 10, **options)
    assert message in _one_line(error)
    assert not isinstance(error.value, ModelPackageError)


def test_torch_hub_weights_are_found_where_torch_hub_keeps_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(PretrainedWeightsError) as error:
        torch_hub_file(RESNET18_URL, "the weights of resnet18")
    message = _one_line(error)
    assert f"put resnet18-f37072fd.pth (from {RESNET18_URL}) at {expected} " in message
    assert "never downloads" in message
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"weights")
    assert torch_hub_file(RESNET18_URL, "the weights of resnet18") == expected
    assert torch_hub_file(RESNET18_URL, "x", tmp_path / "torch" / "hub" / "checkpoints") == expected


def _hf_cache_entry(cache: Path, repo_id: str, files: list[str], ref: str = "main") -> Path:
    """A repository as huggingface_hub caches it: refs/<ref> holds the commit, and
    snapshots/<commit>/<file> links into blobs/."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(f"{repo_id}@{ref}".encode()).hexdigest()
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (folder / "blobs").mkdir(exist_ok=True)
    for name in files:
        blob = hashlib.sha256(name.encode()).hexdigest()
        (folder / "blobs" / blob).write_bytes(name.encode())
        link = folder / "snapshots" / commit / name
        if not link.is_symlink():
            link.symlink_to(Path("..", "..", "blobs", blob))
    return folder / "snapshots" / commit


def test_hugging_face_weights_are_found_as_the_hub_caches_them(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cache = tmp_path / "hf" / "hub"  # $HF_HOME/hub
    assert hf_hub_cache() == cache
    names = hub_filenames("pytorch_model.bin")
    assert names == ["model.safetensors", "pytorch_model.bin"]  # timm's order
    with pytest.raises(PretrainedWeightsError) as error:
        hf_hub_file(TIMM_RESNET18, names, "the weights of resnet18")
    message = _one_line(error)
    assert f"at {cache / 'models--timm--resnet18.a1_in1k'}," in message
    assert f"`hf download {TIMM_RESNET18}`" in message and "never downloads" in message

    snapshot = _hf_cache_entry(cache, TIMM_RESNET18, ["pytorch_model.bin"])
    assert hf_hub_file(TIMM_RESNET18, names, "w") == snapshot / "pytorch_model.bin"
    _hf_cache_entry(cache, TIMM_RESNET18, ["model.safetensors"])
    assert hf_hub_file(TIMM_RESNET18, names, "w") == snapshot / "model.safetensors"
    # A revision: a branch or tag through refs/, a commit directly; another one is not there.
    tagged = _hf_cache_entry(cache, TIMM_RESNET18, ["pytorch_model.bin"], ref="v1")
    assert find_in_hf_cache(TIMM_RESNET18, names, "v1") == tagged / "pytorch_model.bin"
    assert find_in_hf_cache(TIMM_RESNET18, names, tagged.name) == tagged / "pytorch_model.bin"
    assert find_in_hf_cache(TIMM_RESNET18, names, "v2") is None
    assert find_in_hf_cache(TIMM_RESNET18, ["open_clip_model.safetensors"]) is None
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))  # before $HF_HOME
    assert find_in_hf_cache(TIMM_RESNET18, names) is None


def test_timm_weights_from_the_hub_cache_or_else_torch_hubs(tmp_path, monkeypatch):
    # What timm's pretrained_cfg says, resolved without timm: the hub first, then the URL.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = "https://github.com/huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/"
    url += "resnet18_a1_0-d63eafa0.pth"
    cfg = {"hf_hub_id": TIMM_RESNET18, "url": url}
    with pytest.raises(PretrainedWeightsError) as error:
        cached_weights("model timm: resnet18", **cfg)
    assert "models--timm--resnet18.a1_in1k" in _one_line(error)
    old = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18_a1_0-d63eafa0.pth"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"weights")
    assert cached_weights("model timm: resnet18", **cfg) == old
    snapshot = _hf_cache_entry(tmp_path / "hf", TIMM_RESNET18, ["model.safetensors"])
    assert cached_weights("model timm: resnet18", **cfg) == snapshot / "model.safetensors"
    # A revision and a file name of the cfg's own; timm's `cache_dir` option instead of the cache.
    own = _hf_cache_entry(tmp_path / "own", "org/net", ["open_clip_pytorch_model.bin"], "r2")
    found = cached_weights("m", hf_hub_id="org/net@r2",
                           hf_hub_filename="open_clip_pytorch_model.bin",
                           cache_dir=tmp_path / "own")  # fmt: skip
    assert found == own / "open_clip_pytorch_model.bin"
    with pytest.raises(UnknownModelError, match="has no published weights"):
        cached_weights("model timm: plain")


def test_a_head_for_other_classes_replaces_every_layer_with_the_weights_classes():
    torch.manual_seed(0)
    model = build_model("resnet8", 3, 1000).eval()  # eval: BN statistics stay as they are
    before = {key: value.clone() for key, value in model.state_dict().items()}
    replaced = replace_heads(model, 1000, 10, "resnet8")
    assert replaced == ["classifier"]
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    assert kept and all(torch.equal(value, before[key]) for key, value in kept.items())
    # A 1x1 conv head (SqueezeNet's), and an auxiliary head beside the main one (GoogLeNet's).
    convs = torch.nn.Sequential(torch.nn.Conv2d(8, 1000, 1), torch.nn.Flatten(),
                                torch.nn.Linear(1000, 1000))  # fmt: skip
    assert replace_heads(convs, 1000, 7, "convs") == ["0", "2"]
    assert convs[0].out_channels == 7 and convs[2].out_features == 7
    with pytest.raises(PretrainedWeightsError, match="found no layer with its 1000 outputs"):
        replace_heads(build_model("resnet8", 3, 10), 1000, 10, "resnet8")


def test_cached_weights_are_read_without_running_their_code(tmp_path):
    # torch.hub reads its cache with weights_only=False; torchvision's builders load through it.
    path = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(2), "note": argparse.Namespace(a=1)}, path)
    with weights_only_loads(), pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=False)
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    assert isinstance(torch.load(path, weights_only=False)["note"], argparse.Namespace)


@NEEDS_TORCHVISION
def test_torchvision_models_build_and_read_pretrained_weights_from_the_cache(tmp_path, monkeypatch):
    from torchvision import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build_model("torchvision:resnet18", 3, 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert build_model("torchvision:resnet18", 3, 10, num_classes=7).fc.out_features == 7
    with pytest.raises(UnknownModelError, match="Unknown model resnet999"):
        build_model("torchvision:resnet999", 3, 10)
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(PretrainedWeightsError) as error:
        build_model("torchvision:resnet18", 3, 10, pretrained=True)
    assert f"at {cached} " in _one_line(error)
    # Weights of our own making where the published ones would be: nothing is downloaded.
    torch.manual_seed(1)
    published = models.resnet18().state_dict()
    cached.parent.mkdir(parents=True)
    torch.save(published, cached)
    same_classes = build_model("torchvision:resnet18", 3, 1000, pretrained=True)
    assert all(torch.equal(v, published[k]) for k, v in same_classes.state_dict().items())
    ten = build_model("torchvision:resnet18", 3, 10, pretrained=True)
    assert ten.fc.out_features == 10
    kept = {k: v for k, v in ten.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(v, published[k]) for k, v in kept.items())
    torch.save({"x": argparse.Namespace(a=1)}, cached)  # code in the file: not run
    with pytest.raises(UnknownModelError, match="Weights only load failed"):
        build_model("torchvision:resnet18", 3, 10, pretrained=True)


@NEEDS_TIMM
def test_timm_models_build_and_read_pretrained_weights_from_the_cache(tmp_path, monkeypatch):
    import timm

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model = build_model("timm:resnet18", 1, 10)  # in_chans and num_classes from the data
    assert model.conv1.in_channels == 1 and model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert build_model("timm:resnet18", 1, 10, in_chans=3, num_classes=4).conv1.in_channels == 3
    with pytest.raises(UnknownModelError, match="close names: resnet18"):
        build_model("timm:resnet19", 3, 10)
    with pytest.raises(PretrainedWeightsError) as error:
        build_model("timm:resnet18", 3, 10, pretrained=True)
    assert str(tmp_path / "hf" / "models--timm--resnet18.a1_in1k") in _one_line(error)
    with pytest.raises(UnknownModelError, match="'pretrained_cfg' is not passed on"):
        build_model("timm:resnet18", 3, 10, pretrained=True, pretrained_cfg={"source": "hf-hub"})
    torch.manual_seed(1)
    published = timm.create_model("resnet18").state_dict()
    snapshot = _hf_cache_entry(tmp_path / "hf", TIMM_RESNET18, [])
    torch.save(published, snapshot / "pytorch_model.bin")
    ten = build_model("timm:resnet18", 3, 10, pretrained=True)
    assert ten.fc.out_features == 10
    kept = {k: v for k, v in ten.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(v, published[k]) for k, v in kept.items())
    grey = build_model("timm:resnet18", 1, 1000, pretrained=True)  # timm sums the RGB filters
    torch.testing.assert_close(grey.conv1.weight, published["conv1.weight"].sum(1, keepdim=True))
