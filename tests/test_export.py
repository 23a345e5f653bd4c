"""`tucker-sweep export` round-trips: the report's recommended trial by default; the exported
TorchScript model, the ONNX model run by ONNX Runtime and the plain state dict, rebuilt here,
score on the validation split exactly what the trial logged at that epoch; model.json has the
latency against dense per deploy batch size and runtime; and the model is in the MLflow Model
Registry with its ranks."""

from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime
import pytest
import torch
import yaml
from support.cli import run_cli, run_cli_in_process
from support.report_store import EXPERIMENT, SWEEP, handmade_store, shared_sweep

from lightning_modules.data import make_datamodule
from lightning_modules.inference import FORMS, inference_form
from lightning_modules.nets import build_model, decompose, uniform_plan
from sweep.config import SweepConfig
from sweep.export.latency import RUNTIMES
from sweep.export.onnx_file import INPUT_NAME, OnnxNetwork, save_onnx

# The shared sweep is small and short: its trials may all be more than the default 0.5 pt
# below dense, so the default export is asked for a wider tolerance (the report gets the same).
MAX_DROP = ["--max-drop", "20"]


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
    result = run_cli(
        "export", SWEEP, *MAX_DROP, "--out", str(out), *sweep.store_args(), cwd=sweep.folder
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exported" in result.stdout and "registered as tucker-report-sweep" in result.stdout
    assert {p.name for p in out.iterdir()} >= {
        "model.ckpt",
        "state_dict.pt",
        "model.json",
        "model.torchscript.pt",
        "model.onnx",
    }

    described = json.loads((out / "model.json").read_text())
    source = described["source"]
    client = sweep.client()
    history = {
        m.step: m.value for m in client.get_metric_history(source["trial_run_id"], "val_acc")
    }
    logged = history[source["epoch"]]
    assert source["val_acc"] == pytest.approx(logged, abs=1e-9)

    # The default is the report's recommended trial, under the same criteria.
    report = run_cli(
        "report",
        SWEEP,
        *MAX_DROP,
        "--format",
        "json",
        "--no-log",
        "--out",
        str(tmp_path / "report"),
        *sweep.store_args(),
        cwd=sweep.folder,
    )
    recommended = json.loads(report.stdout)["recommended"]["trial"]
    assert recommended["trial_name"] == source["trial_name"]
    assert recommended["run_id"] == source["trial_run_id"]

    # ONNX Runtime reproduces the checkpoint's val acc, and the TorchScript model's logits.
    checked = described["val_acc_checked"]
    assert checked["onnxruntime"] == pytest.approx(logged, abs=1e-6)
    assert checked["onnxruntime"] == checked["checkpoint"] == checked["torchscript"]
    assert "(ONNX Runtime)" in result.stdout
    assert described["format"] == "tucker-sweep export v2"
    assert set(described["forms"]) == set(described["rank_plan"])
    assert set(described["forms"].values()) <= set(FORMS)
    _check_latency(described["latency"], _deploy_batch_sizes(sweep), result.stdout)

    # Same data module, same seed: the same validation split the trial was scored on.
    datamodule = make_datamodule("digits", seed=0, batch_size=64)
    loader = datamodule.val_dataloader()
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    assert _accuracy(scripted, loader) == pytest.approx(logged, abs=1e-6)
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    images = datamodule.val_tensors()[0]
    for batch in (images[:1], images[:5]):  # any batch size: the batch dimension is dynamic
        (logits,) = session.run(None, {INPUT_NAME: batch.numpy()})
        with torch.no_grad():
            expected = scripted(batch).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)

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
    assert {"export/model.torchscript.pt", "export/model.onnx"} <= exported


def _deploy_batch_sizes(sweep) -> list[int]:
    """The deploy batch sizes of the sweep's config (the defaults: it sets none)."""
    config = SweepConfig.model_validate(yaml.safe_load(sweep.config.read_text()))
    return config.deploy.batch_sizes


def _check_latency(latency: dict, batch_sizes: list[int], stdout: str) -> None:
    """Figures for every deploy batch size and runtime; positive, whatever their ratio (a
    benchmark's business, not a test's)."""
    assert latency["device"] == "cpu" and latency["device_name"] and latency["threads"] >= 1
    assert set(latency["batches"]) == {str(batch) for batch in batch_sizes}
    for batch in batch_sizes:
        figures = latency["batches"][str(batch)]
        assert set(figures) == set(RUNTIMES)
        for runtime in figures.values():
            assert runtime["dense_ms"] > 0 and runtime["compressed_ms"] > 0
            assert runtime["speedup"] == pytest.approx(
                runtime["dense_ms"] / runtime["compressed_ms"]
            )
        assert f"batch {batch}: " in stdout


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
    assert (out / "model.onnx").is_file()

    result = run_cli("export", SWEEP, "--trial", "nosuch", *sweep.store_args(), cwd=sweep.folder)
    assert result.returncode == 2
    assert "has no trial 'nosuch'" in result.stderr and "Traceback" not in result.stderr

    result = run_cli(
        "export",
        SWEEP,
        *MAX_DROP,
        "--storage-path",
        str(tmp_path / "elsewhere"),
        *sweep.store_args(),
        cwd=sweep.folder,
    )
    assert result.returncode == 2
    assert "--storage-path" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _one_line_error(result, *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_export_refuses_bad_criteria_in_one_line(tmp_path, capfd):
    for flags, expected in (
        (["--minimise", "speed"], "--minimise: one of params, flops, latency, got 'speed'"),
        (["--budget", "lots"], "--budget"),
        (["--max-drop", "-1"], "--max-drop"),
    ):
        result = run_cli_in_process("export", *flags, cwd=tmp_path, capfd=capfd)
        _one_line_error(result, expected)


def _trial(ranks: tuple[int, int, int], history: list[float]) -> dict:
    metrics = {"params": 100 * ranks[0], "flops": 2000 * ranks[0], "compression": 50 / ranks[0],
               "best_val_acc": max(history), "epochs_to_target": math.nan,
               "seconds_to_target": math.nan, "epochs_run": len(history), "stopped_early": 0.0,
               "wall_seconds": 1.5 * len(history)}  # fmt: skip
    return {"ranks": ranks, "history": history, "stop_reason": "completed", "metrics": metrics}


def test_export_without_a_recommended_trial_names_the_closest_and_the_ways_out(tmp_path, capfd):
    # Dense scores 0.96 (handmade_store); no trial is within 0.5 pt; the closest is trial 1.
    uri = handmade_store(tmp_path, [_trial((4, 4, 2), [0.5, 0.90]), _trial((8, 8, 3), [0.94])])
    store = ["--tracking-uri", uri, "--experiment", EXPERIMENT]
    result = run_cli_in_process("export", "handmade", *store, cwd=tmp_path, capfd=capfd)
    _one_line_error(result, "no trial to recommend", "closest is trial 00001", "--max-drop 2 ",
                    "--trial 00001")  # fmt: skip
    result = run_cli_in_process(
        "export", "handmade", "--budget", "100", *store, cwd=tmp_path, capfd=capfd
    )
    _one_line_error(result, "params <= 100", "--budget", "--trial")


@pytest.mark.parametrize("form", ["folded", "factorized"])
def test_an_inference_form_in_onnx_gives_the_eager_logits_at_any_batch_size(tmp_path, form):
    torch.manual_seed(0)
    network = build_model("vgg_small", 1, 10, width=8)
    decompose(network, uniform_plan(network, 0.5), init="random")
    example = torch.randn(4, 1, 8, 8)
    fast = inference_form(network.eval(), example, forms=[form])
    assert set(fast.tucker_forms.values()) == {form}
    save_onnx(fast, example, tmp_path / "model.onnx")
    onnx_network = OnnxNetwork(tmp_path / "model.onnx", threads=1)
    for batch in (1, 3):
        images = torch.randn(batch, 1, 8, 8)
        with torch.no_grad():
            expected = fast(images)
        torch.testing.assert_close(onnx_network(images), expected, atol=1e-4, rtol=1e-4)
