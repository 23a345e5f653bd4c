"""One small real sweep shared by the report, export and UI tests (about a minute on 2 CPUs),
and a hand-built MLflow store in the sweep layout for the cases a real sweep cannot be stopped
at on purpose (still running, every trial failed)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from support.cli import run_cli, write_config
from sweep.tracking.client import experiment_id_for
from sweep.tracking.layout import (
    log_epoch_history,
    log_final_metrics,
    start_child_run,
    start_sweep_run,
)
from sweep.tracking.names import (
    FINETUNED_BASELINE_KIND,
    LATENCY_METRIC,
    STOP_REASON_TAG,
    TRIAL_ID_TAG,
    dense_latency_metric,
    latency_metric,
    speedup_metric,
)

SWEEP = "report-sweep"
EXPERIMENT = "tests"
# The parent's params of a sweep that timed its plans on one CPU thread, at batch sizes 1, 64.
CPU_DEPLOY = {
    "deploy/device": "cpu",
    "deploy/device_name": "AMD EPYC 7B13",
    "deploy/threads": "1",
    "deploy/batch_sizes": "1,64",
    "deploy/dtype": "float32",
}


@dataclass(frozen=True)
class SmallSweep:
    folder: Path
    config: Path

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.folder / 'mlflow.db'}"

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)

    def store_args(self) -> list[str]:
        return ["--tracking-uri", self.tracking_uri, "--experiment", EXPERIMENT]


_shared: dict[str, SmallSweep] = {}


def shared_sweep(tmp_path_factory: pytest.TempPathFactory) -> SmallSweep:
    """The sweep, launched by the first test module that asks for it in this session."""
    if "sweep" not in _shared:
        folder = tmp_path_factory.mktemp("report-sweep")
        config = write_config(folder, {"name": SWEEP})
        result = run_cli("launch", str(config), cwd=folder)
        assert result.returncode == 0, result.stderr[-3000:]
        _shared["sweep"] = SmallSweep(folder, config)
    return _shared["sweep"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def speed_metrics(timings: dict[int, tuple[float, float]]) -> dict[str, float]:
    """A trial's measured-speed metrics, as the sweep logs them, from batch size -> (its
    latency, the dense latency timed beside it) in ms; the first batch size gives latency_ms."""
    metrics = {LATENCY_METRIC: next(iter(timings.values()))[0]} if timings else {}
    for batch, (latency, dense) in timings.items():
        metrics[latency_metric(batch)] = latency
        metrics[dense_latency_metric(batch)] = dense
        metrics[speedup_metric(batch)] = dense / latency
    return metrics


def _dense_latency(latencies: dict[int, float] | None) -> dict[str, float]:
    return {latency_metric(batch): ms for batch, ms in (latencies or {}).items()}


def _finetuned_run(
    client: MlflowClient,
    experiment_id: str,
    parent: str,
    val_acc: float,
    test_acc: float,
    dense_latency: dict[int, float] | None = None,
) -> None:
    run_id = start_child_run(
        client, experiment_id, parent, FINETUNED_BASELINE_KIND, FINETUNED_BASELINE_KIND
    )
    log_epoch_history(client, run_id, [{"epoch": 1, "val_acc": val_acc, "trial_seconds": 1.0}])
    final = {"params": 10000, "flops": 200000, "compression": 1.0, "best_val_acc": val_acc,
             "epochs_run": 1, "stopped_early": 0, "wall_seconds": 1.0,
             "test_acc": test_acc, **_dense_latency(dense_latency)}  # fmt: skip
    log_final_metrics(client, run_id, final, 1)
    client.set_terminated(run_id)


def handmade_store(
    folder: Path,
    trials: list[dict],
    sweep_status: str = "FINISHED",
    name: str = "handmade",
    finetuned: tuple[float, float] | None = None,
    deploy: dict[str, str] | None = None,
    dense_latency: dict[int, float] | None = None,
) -> str:
    """A SQLite store holding one sweep in the layout sweep.tracking writes: a parent run
    (params as launch logs them), a dense baseline and the given trials, each a dict with
    ranks, metrics (final ones, or none for a trial still running), history (val_acc per
    epoch), status (MLflow), stop_reason (tag) and speed (batch size -> (latency, dense
    latency) in ms: see speed_metrics). `finetuned` (best val acc, test acc): a sweep from
    model.checkpoint, whose baseline is the given model and which also has the given model
    fine-tuned. `deploy`: the parent's deploy/* params (e.g. CPU_DEPLOY) of a sweep that
    measured speed; `dense_latency`: batch size -> the dense runs' latency in ms."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = experiment_id_for(client, EXPERIMENT)
    params = {
        "data": "digits",
        "model": "vgg_small",
        "scheduler": "asha",
        "max_t": 4,
        "target_accuracy": 0.9,
        "num_samples": len(trials),
        **(deploy or {}),
    }
    parent = start_sweep_run(client, experiment_id, name, params)
    baseline = start_child_run(client, experiment_id, parent, "baseline", "baseline")
    log_epoch_history(
        client,
        baseline,
        [
            {"epoch": e, "val_acc": a, "trial_seconds": e * 1.0}
            for e, a in enumerate([0.8, 0.92, 0.95, 0.96], 1)
        ],
    )
    log_final_metrics(
        client,
        baseline,
        {
            "params": 10000,
            "flops": 200000,
            "compression": 1.0,
            "best_val_acc": 0.96,
            "epochs_to_target": 2,
            "seconds_to_target": 2.0,
            "epochs_run": 4,
            "stopped_early": 0,
            "wall_seconds": 4.0,
            "test_acc": 0.95,
            **_dense_latency(dense_latency),
        },
        4,
    )
    client.set_terminated(baseline)
    if finetuned is not None:
        _finetuned_run(client, experiment_id, parent, *finetuned, dense_latency)
    for index, trial in enumerate(trials):
        trial_name = f"run_trial_abcde_{index:05d}"
        run_id = start_child_run(
            client,
            experiment_id,
            parent,
            trial_name,
            "trial",
            {TRIAL_ID_TAG: f"abcde_{index:05d}", "trial_name": trial_name},
        )
        client.log_param(run_id, "ranks/block2.conv1", "x".join(map(str, trial["ranks"])))
        client.log_param(run_id, "lr", "0.05")
        client.log_param(run_id, "init", "hooi")
        history = trial.get("history", [])
        log_epoch_history(
            client,
            run_id,
            [
                {"epoch": e, "val_acc": a, "trial_seconds": e * 1.5}
                for e, a in enumerate(history, 1)
            ],
        )
        if trial.get("metrics"):
            log_final_metrics(client, run_id, trial["metrics"], len(history))
        if trial.get("speed"):
            log_final_metrics(client, run_id, speed_metrics(trial["speed"]), len(history))
        if trial.get("stop_reason"):
            client.set_tag(run_id, STOP_REASON_TAG, trial["stop_reason"])
        if trial.get("status", "FINISHED") != "RUNNING":
            client.set_terminated(run_id, status=trial.get("status", "FINISHED"))
    if sweep_status != "RUNNING":
        client.set_terminated(parent, status=sweep_status)
    return uri
