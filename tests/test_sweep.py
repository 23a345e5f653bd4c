"""Whole sweeps on a real local Ray with real Lightning trials and a real MLflow store."""

import json
import math

import pytest
from mlflow.tracking import MlflowClient
from support.cli import run_cli, trial_runs, write_config
from support.faults import FaultPlan

FINAL_METRICS = {
    "params", "flops", "compression", "best_val_acc", "epochs_to_target", "seconds_to_target",
    "epochs_run", "stopped_early", "wall_seconds",
}  # fmt: skip


@pytest.mark.slow
def test_digits_sweep_with_asha_records_every_trial(tmp_path):
    config = write_config(tmp_path, {})
    result = run_cli("launch", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best val_acc" in result.stdout

    runs = trial_runs(tmp_path)
    assert len(runs) == 8
    assert len({run.data.tags["tucker_sweep.trial_id"] for run in runs}) == 8
    for run in runs:
        assert run.info.status == "FINISHED"
        assert set(run.data.metrics) >= FINAL_METRICS, run.data.metrics
        assert any(key.startswith("ranks/") for key in run.data.params)
        assert {"lr", "init"} <= set(run.data.params)
    stopped = [run for run in runs if run.data.metrics["stopped_early"] == 1.0]
    assert stopped, "ASHA stopped no trial"
    for run in stopped:
        assert run.data.metrics["epochs_run"] < 6
        assert run.data.tags["tucker_sweep.stop_reason"] == "stopped_early"
    best = max(run.data.metrics["best_val_acc"] for run in runs)
    assert best > 0.90

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(
            range(1, int(run.data.metrics["epochs_run"]) + 1)
        )
        reached = [m.step for m in history if m.value >= 0.9]
        expected = min(reached) if reached else math.nan
        got = run.data.metrics["epochs_to_target"]
        assert got == expected or (math.isnan(got) and math.isnan(expected))
    (parent,) = client.search_runs(
        [runs[0].info.experiment_id], filter_string="tags.`tucker_sweep.kind` = 'sweep'"
    )
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "config.yaml", "seed.json", "spectra.png",
    }  # fmt: skip
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs)

    # Every trial, ASHA's stopped ones too, timed its model beside a dense one (deploy: cpu,
    # 1 thread by default; the tests' batch sizes 1 and 8); the baseline run has the dense
    # latency.
    speed = {f"{prefix}{batch}" for prefix in ("latency_ms_b", "dense_latency_ms_b", "speedup_b")
             for batch in (1, 8)}  # fmt: skip
    for run in runs:
        metrics = run.data.metrics
        assert speed | {"latency_ms"} <= set(metrics), metrics
        for batch in (1, 8):
            ratio = metrics[f"dense_latency_ms_b{batch}"] / metrics[f"latency_ms_b{batch}"]
            assert metrics[f"speedup_b{batch}"] == pytest.approx(ratio)
    (baseline,) = client.search_runs(
        [runs[0].info.experiment_id], filter_string="tags.`tucker_sweep.kind` = 'baseline'"
    )
    assert {"latency_ms_b1", "latency_ms_b8"} <= set(baseline.data.metrics)
    assert parent.data.params["deploy/device"] == "cpu"
    assert parent.data.params["deploy/batch_sizes"] == "1,8"
    assert parent.data.params["deploy/device_name"]


@pytest.mark.slow
def test_failing_trials_are_retried_or_marked_failed(tmp_path):
    config = write_config(
        tmp_path,
        {
            "search.num_samples": 4,
            "scheduler.name": "none",
            "stopping.max_epochs": 3,
            "scheduler.max_t": 3,
            "training.max_failures": 1,
            "decomposition.mode": "per_layer",
            "decomposition.seed": False,
            "decomposition.init": ["random"],
        },
    )
    # trial 0 raises on its first attempt only; trial 1 on every attempt
    faults = FaultPlan(epoch=1, transient=(0,), permanent=(1,))
    result = run_cli(str(config), cwd=tmp_path, faults=faults)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 failed" in result.stdout
    runs = {run.data.tags["trial_name"].rsplit("_", 1)[-1]: run for run in trial_runs(tmp_path)}
    assert len(runs) == 4
    assert runs["00000"].info.status == "FINISHED"
    assert runs["00000"].data.metrics["epochs_run"] == 3
    assert runs["00001"].info.status == "FAILED"
    assert runs["00001"].data.tags["tucker_sweep.stop_reason"] == "failed"
    assert {runs[i].info.status for i in ("00002", "00003")} == {"FINISHED"}


@pytest.mark.slow
def test_checkpoint_every_k_epochs_and_a_retry_resumes_from_the_last_one(tmp_path):
    config = write_config(
        tmp_path,
        {
            "search.num_samples": 2,
            "scheduler.name": "none",
            "stopping.max_epochs": 5,
            "scheduler.max_t": 5,
            "training.max_failures": 1,
            "training.checkpoint_every": 2,
            "decomposition.mode": "per_layer",
            "decomposition.seed": False,
            "decomposition.init": ["random"],
        },
    )
    # trial 0 raises before its 4th epoch, once: the last checkpoint is epoch 2's
    result = run_cli(str(config), cwd=tmp_path, faults=FaultPlan(epoch=3, transient=(0,)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 failed" in result.stdout

    folders = sorted((tmp_path / "ray_results" / "test-sweep").glob("run_trial_*"))
    assert len(folders) == 2
    for folder in folders:
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        checkpointed = {row["training_iteration"] for row in rows if row.get("checkpoint_dir_name")}
        assert checkpointed == {2, 4, 5}, folder.name  # every 2nd epoch, and the last
    first = next(folder for folder in folders if "_00000_" in folder.name)
    rows = [json.loads(line) for line in (first / "result.json").read_text().splitlines()]
    # epoch 3 ran twice: once before the fault, once after resuming from epoch 2's checkpoint
    assert [row["training_iteration"] for row in rows] == [1, 2, 3, 3, 4, 5]

    for run in trial_runs(tmp_path):
        assert run.info.status == "FINISHED"
        history = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(
            run.info.run_id, "val_acc"
        )
        assert sorted(m.step for m in history) == [1, 2, 3, 4, 5]  # the re-run epoch once

    out = tmp_path / "export"
    # Any recommended plan (this short sweep may have none within 0.5 pt of dense).
    result = run_cli("export", "test-sweep", "--no-register", "--out", str(out), "--max-drop",
                     "100", "--experiment", "tests", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    exported = json.loads((out / "model.json").read_text())["source"]
    assert exported["epoch"] in {2, 4, 5}

    # Without Tune's result.json, export reads each checkpoint's epoch from the checkpoint.
    for folder in folders:
        (folder / "result.json").unlink()
    result = run_cli("export", "test-sweep", "--no-register", "--out", str(tmp_path / "again"),
                     "--max-drop", "100", "--experiment", "tests", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((tmp_path / "again" / "model.json").read_text())["source"]
    assert (again["trial_name"], again["epoch"]) == (exported["trial_name"], exported["epoch"])
