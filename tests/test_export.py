"""`tucker-sweep export` round-trips: the exported TorchScript model and the plain state dict,
rebuilt here, score on the validation split exactly what the trial logged at that epoch, and
the model is in the MLflow Model Registry with its ranks."""

from __future__ import annotations

import json

import pytest
import torch
from support.cli import run_cli
from support.report_store import SWEEP, shared_sweep

from lightning_modules.data import make_datamodule
from lightning_modules.nets import build_model, decompose


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return shared_sweep(tmp_path_factory)


@torch.no_grad()
def _accuracy(network, loader) -> float:
    correct = total = 0
    for images, labels in loader:
        correct += int((network(images).argmax(dim=1) == labels).sum())
        total += len(labels)
    return correct / total


@pytest.mark.slow
def test_export_reproduces_the_logged_accuracy_and_registers_the_model(sweep, tmp_path):
    out = tmp_path / "export"
    result = run_cli("export", SWEEP, "--out", str(out), *sweep.store_args(), cwd=sweep.folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exported" in result.stdout and "registered as tucker-report-sweep" in result.stdout
    assert {p.name for p in out.iterdir()} >= {
        "model.ckpt",
        "state_dict.pt",
        "model.json",
        "model.torchscript.pt",
    }

    described = json.loads((out / "model.json").read_text())
    source = described["source"]
    client = sweep.client()
    history = {
        m.step: m.value for m in client.get_metric_history(source["trial_run_id"], "val_acc")
    }
    logged = history[source["epoch"]]
    assert source["val_acc"] == pytest.approx(logged, abs=1e-9)

    # The default is the report's best trial.
    report = run_cli(
        "report",
        SWEEP,
        "--format",
        "json",
        "--no-log",
        "--out",
        str(tmp_path / "report"),
        *sweep.store_args(),
        cwd=sweep.folder,
    )
    assert json.loads(report.stdout)["best"]["run_id"] == source["trial_run_id"]

    # Same data module, same seed: the same validation split the trial was scored on.
    datamodule = make_datamodule("digits", seed=0, batch_size=64)
    loader = datamodule.val_dataloader()
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    assert _accuracy(scripted, loader) == pytest.approx(logged, abs=1e-6)

    network = build_model(
        described["model_name"],
        described["in_channels"],
        described["num_classes"],
        **described["model_options"],
    )
    decompose(network, {k: tuple(v) for k, v in described["rank_plan"].items()}, init="random")
    network.load_state_dict(torch.load(out / "state_dict.pt", weights_only=True))
    assert _accuracy(network.eval(), loader) == pytest.approx(logged, abs=1e-6)
    assert described["normalisation"]["mean"] == pytest.approx(datamodule.mean.flatten().tolist())

    registry = client.search_model_versions("name = 'tucker-report-sweep'")
    assert registry, "no model version registered"
    version = max(registry, key=lambda v: int(v.version))
    assert version.run_id == source["trial_run_id"]
    trial = client.get_run(source["trial_run_id"])
    ranks = {k: v for k, v in trial.data.params.items() if k.startswith("ranks/")}
    assert ranks and {k: version.tags[k] for k in ranks} == ranks
    assert float(version.tags["compression"]) == pytest.approx(trial.data.metrics["compression"])
    exported = {a.path for a in client.list_artifacts(trial.info.run_id, "export")}
    assert "export/model.torchscript.pt" in exported


@pytest.mark.slow
def test_export_of_a_chosen_trial_and_of_an_unknown_one(sweep, tmp_path):
    out = tmp_path / "trial3"
    result = run_cli(
        "export",
        SWEEP,
        "--trial",
        "3",
        "--no-register",
        "--out",
        str(out),
        *sweep.store_args(),
        cwd=sweep.folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "model.json").read_text())["source"]["trial_name"].endswith("_00003")

    result = run_cli("export", SWEEP, "--trial", "nosuch", *sweep.store_args(), cwd=sweep.folder)
    assert result.returncode == 2
    assert "has no trial 'nosuch'" in result.stderr and "Traceback" not in result.stderr

    result = run_cli(
        "export",
        SWEEP,
        "--storage-path",
        str(tmp_path / "elsewhere"),
        *sweep.store_args(),
        cwd=sweep.folder,
    )
    assert result.returncode == 2
    assert "--storage-path" in result.stderr and len(result.stderr.strip().splitlines()) == 1
