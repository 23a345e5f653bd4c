"""Sweeps on a real multi-node Ray cluster (network namespaces, token auth) logging to a real
MLflow server, with faults: a lost worker node, an MLflow outage, a killed driver."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from support.faults import FaultPlan
from support.netns_cluster import BIN, NamespaceCluster, namespaces_available

pytestmark = pytest.mark.slow
UNAVAILABLE = namespaces_available()
MAX_T = 5
TRIALS = 6
EPOCH_DELAY_S = 3.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NamespaceCluster]:
    if UNAVAILABLE:
        pytest.skip(f"multi-node tests need network namespaces: {UNAVAILABLE}")
    nodes = NamespaceCluster(tmp_path)
    try:
        nodes.create_network()
        nodes.start_ray()
        nodes.start_mlflow()
        yield nodes
    finally:
        nodes.close()


def write_sweep(cluster: NamespaceCluster, name: str) -> Path:
    config = {
        "name": name,
        "model": {"name": "vgg_small", "options": {"width": 8}},
        "decomposition": {"seed": True, "seed_epochs": 2},
        "search": {"num_samples": TRIALS, "seed": 1},
        "scheduler": {"name": "none", "max_t": MAX_T},
        "stopping": {"max_epochs": MAX_T, "target_accuracy": 0.9},
        "training": {"max_failures": 3},
        "tracking": {"uri": cluster.mlflow_uri, "experiment": "multinode"},
        "cluster": {"address": cluster.head_address,
                    "storage_path": str(cluster.workdir / "ray_results")},
    }  # fmt: skip
    path = cluster.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(cluster: NamespaceCluster, *args: str, log: str):
    """The real CLI's `tucker-sweep launch` on the head node."""
    return cluster.popen(0, str(BIN / "tucker-sweep"), "launch", *args, log=log)


def launch_slowly(cluster: NamespaceCluster, config: Path, log: str):
    """A launch whose trials' epochs are paced: a 5-epoch trial takes ~1 s here, paced to
    ~16 s so that the faults below strike while trials are mid-way, however fast the machine."""
    plan = json.dumps(dataclasses.asdict(FaultPlan(epoch_delay_seconds=EPOCH_DELAY_S)))
    return cluster.popen(0, sys.executable, "-m", "support.launch_with_faults", str(config),
                         "--faults", plan, log=log)  # fmt: skip


def trial_results(experiment: Path) -> dict[str, list[dict]]:
    """Tune's per-trial results (result.json lines) as written so far."""
    found = {}
    for path in experiment.glob("*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        found[path.parent.name] = lines
    return found


def wait_until(condition, timeout: float, driver, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"driver ended before {what}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def sweep_runs(cluster: NamespaceCluster) -> list:
    client = MlflowClient(tracking_uri=cluster.mlflow_uri)
    experiment = client.get_experiment_by_name("multinode")
    if experiment is None:  # the driver has not created it yet
        return []
    return client.search_runs([experiment.experiment_id], max_results=1000)


def assert_one_complete_run_per_trial(cluster: NamespaceCluster) -> list:
    runs = sweep_runs(cluster)
    trials = [run for run in runs if run.data.tags.get("tucker_sweep.kind") == "trial"]
    trial_ids = [run.data.tags["tucker_sweep.trial_id"] for run in trials]
    assert len(trial_ids) == len(set(trial_ids)) == TRIALS
    assert not [run.info.run_name for run in runs if run.info.status == "RUNNING"]
    client = MlflowClient(tracking_uri=cluster.mlflow_uri)
    for run in trials:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        assert run.data.metrics["epochs_run"] == MAX_T
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        # every epoch recorded exactly once: nothing lost in an outage, no epoch run twice
        assert sorted(steps) == list(range(1, MAX_T + 1)), (run.info.run_name, steps)
    return trials


def test_worker_loss_and_mlflow_outage_during_a_sweep(cluster: NamespaceCluster) -> None:
    config = write_sweep(cluster, "faults")
    experiment = cluster.workdir / "ray_results" / "faults"
    log = cluster.logs / "driver.log"
    driver = launch_slowly(cluster, config, log="driver.log")
    try:
        # 1. MLflow goes down once trials report, and comes back 15 s later.
        wait_until(lambda: any(trial_results(experiment).values()), 600, driver,
                   "the first trial result", log)  # fmt: skip
        cluster.stop_mlflow()
        outage_started = time.monotonic()
        reported_during_outage = sum(map(len, trial_results(experiment).values()))
        while time.monotonic() - outage_started < 15:
            assert driver.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert sum(map(len, trial_results(experiment).values())) > reported_during_outage
        cluster.start_mlflow()

        # 2. The worker node dies while one of its trials is mid-way.
        worker_ip = cluster.ip(1)

        def worker_trial_in_progress() -> bool:
            return any(rows and rows[-1]["node_ip"] == worker_ip
                       and rows[-1]["training_iteration"] < MAX_T - 1
                       for rows in trial_results(experiment).values())  # fmt: skip

        wait_until(worker_trial_in_progress, 600, driver, "a trial on the worker", log)
        interrupted = {name for name, rows in trial_results(experiment).items()
                       if rows and rows[-1]["node_ip"] == worker_ip
                       and rows[-1]["training_iteration"] < MAX_T}  # fmt: skip
        cluster.kill_node(1)
        assert driver.wait(timeout=900) == 0, log.read_text()[-5000:]
    finally:
        if driver.poll() is None:
            driver.kill()

    trials = assert_one_complete_run_per_trial(cluster)
    nodes = {ip for run in trials for ip in run.data.tags["tucker_sweep.nodes"].split(",")}
    assert nodes == {cluster.ip(0), cluster.ip(1)}
    by_trial_dir = {run.data.tags["trial_name"]: run for run in trials}
    for trial_dir in interrupted:
        run = next(r for name, r in by_trial_dir.items() if trial_dir.startswith(name))
        # finished on the surviving node, from its last checkpoint (epochs not repeated above)
        assert cluster.ip(0) in run.data.tags["tucker_sweep.nodes"]
    results = trial_results(experiment)
    resumed = [rows for name, rows in results.items() if name in interrupted]
    assert resumed and all(rows[-1]["node_ip"] == cluster.ip(0) for rows in resumed)


def test_killed_driver_then_resume_completes(cluster: NamespaceCluster) -> None:
    config = write_sweep(cluster, "resumed")
    log = cluster.logs / "first-driver.log"
    driver = launch_slowly(cluster, config, log="first-driver.log")

    def a_trial_finished() -> bool:
        return any(run.data.tags.get("tucker_sweep.kind") == "trial"
                   and run.info.status == "FINISHED" for run in sweep_runs(cluster))  # fmt: skip

    try:
        wait_until(a_trial_finished, 600, driver, "a finished trial", log)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert len([run for run in sweep_runs(cluster)
                if run.data.tags.get("tucker_sweep.kind") == "trial"]) < TRIALS  # fmt: skip

    storage = str(cluster.workdir / "ray_results")
    resumed = launch(cluster, "--resume", "resumed", "--storage-path", storage,
                     "--address", cluster.head_address, log="second-driver.log")  # fmt: skip
    try:
        assert resumed.wait(timeout=900) == 0, (cluster.logs / "second-driver.log").read_text()[
            -5000:
        ]
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert_one_complete_run_per_trial(cluster)
    (parent,) = [run for run in sweep_runs(cluster)
                 if run.data.tags.get("tucker_sweep.kind") == "sweep"]  # fmt: skip
    assert parent.info.status == "FINISHED"
