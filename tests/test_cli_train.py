"""`tucker-sweep train` end to end: a real run recorded in a real MLflow SQLite store, and
one-line errors with exit status 2 for bad input."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from support.cli import run_cli_in_process

from lightning_modules.module import TuckerClassifier

CLI = [sys.executable, "-c", "from sweep.cli import main; main()"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_train_records_a_tucker_run_in_mlflow(tmp_path):
    result = run_cli(
        "train", "--data", "digits", "--model", "vgg_small", "--ranks", "0.25",
        "--epochs", "3", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("val_acc ") and "compression" in summary

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tucker-sweep")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_id in summary
    metrics = run.data.metrics
    assert {"val_acc", "val_loss", "train_loss", "params", "flops", "compression"} <= set(metrics)
    assert metrics["compression"] > 5
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3  # once per epoch
    assert run.data.params["rank_plan/block3.conv2"] == "[32, 32, 2]"

    # The best checkpoint is an artifact and rebuilds the Tucker model with weights_only.
    mlflow.set_tracking_uri(uri)
    (folder,) = [a.path for a in client.list_artifacts(run.info.run_id)]
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=folder, dst_path=str(tmp_path / "dl")
    )
    (checkpoint,) = Path(local).glob("*.ckpt")
    restored = TuckerClassifier.load_from_checkpoint(checkpoint, weights_only=True)
    assert restored.cost.params == metrics["params"]
    assert restored(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--bogus"], "No such option: --bogus"),
        (["train", "--ranks", "2.0"], "ranks: a rank ratio must be in (0, 1]"),
        (["train", "--ranks", "1,2"], "ranks: must be a ratio"),
        (["train", "--data", "imagenet"], "unknown dataset 'imagenet'"),
        (["train", "--model", "vgg99"], "unknown model 'vgg99'"),
        (["train", "--lr", "-1"], "--lr: Input should be greater than 0"),
        (["train", "--optimizer", "lbfgs"], "--optimizer: Input should be 'sgd' or 'adamw'"),
        (["train", "--data", "npz", "--data-path", "missing.npz"], "missing.npz"),
        (["train", "--config", "missing.yaml"], "config file not found"),
        (["train", "--ranks", "20,4,3"], "N' <= C'*D'"),
        (["launchx"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capfd, args, message):
    result = run_cli_in_process(*args, cwd=tmp_path, capfd=capfd)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded for a refused run


def test_config_file_keys_are_checked(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 2\noptimiser:\n  lr: 0.1\n")
    result = run_cli("train", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "optimiser: unknown key" in result.stderr
