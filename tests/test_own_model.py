"""Compressing a user's own trained model: the example's three commands (train a plain
state_dict, sweep from it, export) and a reload in a fresh process that imports only torch, the
user's module and TuckerConv2d; and one-line errors for what a user can get wrong."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from support.cli import CLI, cli_env, run_cli_in_process, write_config

from lightning_modules.data import make_datamodule
from lightning_modules.nets import build_model, conv_layers, decompose, skipped_convs
from lightning_modules.nets.pretrained import (
    PretrainedWeightsError,
    fit_problem,
    load_pretrained,
    match_state_dict,
    read_state_dict,
)
from sweep.config import SweepConfig, build_config
from sweep.errors import user_errors
from sweep.tuning.launch import inspect_inputs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_model"


def _loads(package: str) -> bool:
    try:
        importlib.import_module(package)
    except Exception:  # missing, or a build for another torch ("operator torchvision::nms")
        return False
    return True


def env() -> dict[str, str]:
    environment = cli_env()
    environment["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), environment["PYTHONPATH"]])
    return environment


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def sweep_config(folder: Path, **model: object) -> Path:
    config = yaml.safe_load((EXAMPLE / "sweep.yaml").read_text())
    config["data"]["options"]["path"] = str(folder / "data.npz")
    config["model"].update({"checkpoint": str(folder / "my_cnn.pt"), **model})
    config["model"]["options"]["width"] = 16
    config["search"]["num_samples"] = 4
    config["training"] = {"finetune_epochs": 2}
    config["tracking"] = {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "own"}
    config["cluster"] = {"storage_path": str(folder / "ray_results")}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("own-model")
    result = run([sys.executable, str(EXAMPLE / "train_my_cnn.py"), "--data", "digits",
                  "--epochs", "3", "--width", "16", "--out", str(folder / "my_cnn.pt"),
                  "--data-out", str(folder / "data.npz")], folder)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


RELOAD = """
import sys, torch
from my_cnn import build
from lightning_modules.tucker import load_compressed
model = load_compressed(lambda: build(1, 10, 16), sys.argv[1]).eval()
images, labels = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    print((model(images).argmax(1) == labels).float().mean().item())
loaded = {name.split(".")[0] for name in sys.modules}
assert not loaded & {"lightning", "pytorch_lightning", "sweep", "ray", "mlflow"}, loaded
"""


@pytest.mark.slow
def test_state_dict_to_sweep_to_export_to_reload(trained):
    folder = trained
    config = sweep_config(folder)
    launched = run([*CLI, "launch", str(config)], folder, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "the given weights" in launched.stdout  # nothing trained from scratch

    # Two dense rows: the user's own model evaluated once on val and test as it is, and the
    # same model fine-tuned as long as a trial, on the sweep's data.
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("own")
    (given,), (finetuned,) = (
        client.search_runs([experiment.experiment_id], f"tags.`tucker_sweep.kind` = '{kind}'")
        for kind in ("baseline", "baseline_finetuned")
    )
    for dense in (given, finetuned):
        assert {"test_acc", "best_val_acc", "params", "flops"} <= set(dense.data.metrics)
    assert finetuned.data.metrics["epochs_run"] == 2  # training.finetune_epochs, as a trial
    report = json.loads((folder / "reports" / "my-cnn" / "report.json").read_text())
    assert [row["role"] for row in report["dense"]] == ["given", "finetuned"]
    assert report["dense"][0]["test_acc"] == pytest.approx(given.data.metrics["test_acc"])
    better = max(given, finetuned, key=lambda dense: dense.data.metrics["best_val_acc"])
    assert report["baseline"]["run_id"] == better.info.run_id  # what the trials are held to
    assert all(trial["params"] < given.data.metrics["params"] for trial in report["trials"])
    if better is given:
        # Fine-tuning from a trained model is not a race against training it from scratch.
        assert "the dense reference was given trained" in report["convergence"]["summary"]

    # Any recommended plan will do (two fine-tuning epochs may leave none within 0.5 pt).
    exported = run([*CLI, "export", "--config", str(config), "--out", str(folder / "export"),
                    "--max-drop", "100"], folder)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    card = json.loads((folder / "export" / "model.json").read_text())
    original, compressed = card["comparison"]["original"], card["comparison"]["compressed"]
    assert compressed["params"] < original["params"] and compressed["test_acc"] is not None

    # The same validation split the sweep used, as plain tensors for the fresh process.
    datamodule = make_datamodule("npz", seed=0, batch_size=64, path=str(folder / "data.npz"))
    torch.save(datamodule.val_tensors(), folder / "val.pt")
    reload = run([sys.executable, "-c", RELOAD, str(folder / "export" / "compressed.pt"),
                  str(folder / "val.pt")], folder)  # fmt: skip
    assert reload.returncode == 0, reload.stderr[-3000:]
    assert float(reload.stdout.strip()) == pytest.approx(compressed["val_acc"], abs=1e-6)


def refused_config(folder: Path, model: dict) -> Path:
    config = sweep_config(folder)
    raw = yaml.safe_load(config.read_text())
    raw["model"].update(model)
    raw["model"] = {key: value for key, value in raw["model"].items() if value is not None}
    raw["name"] = "refused"
    path = folder / "refused.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"factory": "no_such_package.models:build"}, "cannot import no_such_package.models"),
        ({"factory": "support.user_models:linear_only", "options": {}, "checkpoint": None},
         "has no conv layer to decompose"),
        ({"options": {"in_channels": 1, "num_classes": 10, "width": 8}},
         "does not match the model: stem.0.weight is (16, 1, 5, 5) there, (8, 1, 5, 5)"),
    ],
)  # fmt: skip
def test_the_cli_refuses_a_model_it_cannot_compress_in_one_line(
    trained, capfd, monkeypatch, model, message
):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    config = refused_config(trained, model)
    result = run_cli_in_process("launch", str(config), cwd=trained, capfd=capfd)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
    assert not (trained / "ray_results" / "refused").exists()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"factory": "support.user_models:missing"}, "has no callable 'missing'"),
        ({"factory": "support.user_models:not_a_module", "options": {}},
         "returned str, not a torch nn.Module"),
        ({"factory": "support.user_models:depthwise_only", "options": {}, "checkpoint": None},
         "has no conv layer to decompose"),
        ({"options": {"in_channels": 3, "num_classes": 10, "width": 16}, "checkpoint": None},
         "does not fit npz: a batch of 1x8x8 images does not go through it"),
        ({"options": {"in_channels": 1, "num_classes": 7, "width": 16}, "checkpoint": None},
         "it gives (2, 7) for a batch of 2 images; the data has 10 classes"),
        ({"checkpoint": "data.npz"}, "is not a PyTorch weights file"),
        ({"torchvision": "resnet18", "options": {}, "checkpoint": None}, "torchvision"),
        ({"name": "resnet8", "factory": "my_cnn:build"}, "give one of model.name"),
        ({"factory": None, "timm": "resnet18", "torchvision": "resnet18", "options": {}},
         "give one of model.name, model.factory, model.torchvision or model.timm"),
        # Published weights (model.pretrained) are for torchvision and timm models, and are not
        # a second set of given weights.
        ({"factory": None, "name": "resnet8", "options": {}, "pretrained": True,
          "checkpoint": None}, "only a torchvision or timm model has published weights"),
        ({"factory": None, "timm": "resnet18", "options": {}, "pretrained": True},
         "give model.pretrained or model.checkpoint, not both"),
        ({"factory": None, "timm": "resnet18", "options": {"pretrained": True},
          "checkpoint": None}, "write model.pretrained: true, not model.options.pretrained"),
        ({"factory": None, "timm": "hf-hub:timm/resnet18.a1_in1k", "options": {},
          "checkpoint": None}, "model.timm: a model name of timm.list_models()"),
        pytest.param({"factory": None, "timm": "resnet18", "options": {}, "checkpoint": None},
                     "model timm: resnet18 needs timm", marks=pytest.mark.skipif(
                         _loads("timm"), reason="timm loads here; this checks its absence")),
    ],
)  # fmt: skip
def test_models_that_cannot_be_compressed_are_user_errors(trained, model, message, monkeypatch):
    # The checks launch runs before anything is recorded (the CLI prints them in one line).
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(trained)
    with pytest.raises(user_errors()) as refused:
        inspect_inputs(build_config(SweepConfig, refused_config(trained, model)))
    assert message in str(refused.value)


def test_the_example_model_has_what_real_networks_have(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    model = build_model("factory:my_cnn:build", 1, 10, in_channels=1, num_classes=10, width=8)
    layers = {layer.name: layer for layer in conv_layers(model)}
    assert layers["stem.0"].is_input_layer and layers["stem.0"].geometry.kernel_size == (5, 5)
    assert layers["body.4"].geometry.kernel_size == (1, 1)  # Tucker-2: D = 1
    assert skipped_convs(model) == ["body.3"]  # depthwise
    decompose(model, {"body.4": (4, 4, 1)}, init="hooi")
    assert fit_problem(model, (1, 8, 8), 10) is None


def test_weights_are_read_from_the_usual_files_and_matched_by_name(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    model = build_model("factory:my_cnn:build", 1, 10, in_channels=1, num_classes=10, width=8)
    state = model.state_dict()
    formats = {
        "plain.pt": state,
        "saved_dict.pt": {"state_dict": state, "epoch": 3},
        # A Lightning checkpoint of a LightningModule holding the net as `model`.
        "lightning.ckpt": {"state_dict": {f"model.{k}": v for k, v in state.items()},
                           "pytorch-lightning_version": "2.6.0", "epoch": 3},
    }  # fmt: skip
    for name, content in formats.items():
        torch.save(content, tmp_path / name)
        fresh = build_model("factory:my_cnn:build", 1, 10, in_channels=1, num_classes=10, width=8)
        load_pretrained(fresh, tmp_path / name)
        for key, value in fresh.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(PretrainedWeightsError, match="holds a list, not a state_dict"):
        read_state_dict(tmp_path / "list.pt")
    missing = {k: v for k, v in state.items() if not k.startswith("head")}
    with pytest.raises(PretrainedWeightsError, match=r"2 of its \d+ tensors are missing"):
        match_state_dict(model, missing, "partial.pt")


@pytest.mark.parametrize(("source", "extra"), [("torchvision", "vision"), ("timm", "timm")])
@pytest.mark.parametrize("pretrained", [False, True])
def test_a_package_model_where_the_package_does_not_load_is_one_line_and_exit_2(
    tmp_path, capfd, source, extra, pretrained
):
    if _loads(source):
        pytest.skip(f"{source} loads here; this checks the error without it")
    write_config(tmp_path, {"model": {source: "resnet18", "pretrained": pretrained}})
    result = run_cli_in_process("launch", "sweep.yaml", cwd=tmp_path, capfd=capfd)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert f"model {source}: resnet18 needs {source}" in lines[0]
    assert f"pip install 'tucker-sweep[{extra}]'" in lines[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


@pytest.mark.parametrize(
    ("source", "where"),
    [("torchvision", "torch/hub/checkpoints/resnet18-f37072fd.pth"),
     ("timm", "hf/models--timm--resnet18.a1_in1k")],
)  # fmt: skip
def test_published_weights_not_in_the_cache_are_one_line_and_exit_2(
    tmp_path, capfd, monkeypatch, source, where
):
    if not _loads(source):
        pytest.skip(f"needs a {source} that loads beside this torch")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    write_config(tmp_path, {"model": {source: "resnet18", "pretrained": True}})
    result = run_cli_in_process("launch", "sweep.yaml", cwd=tmp_path, capfd=capfd)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / where) in lines[0], result.stderr[-2000:]
    assert "never downloads" in lines[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()
