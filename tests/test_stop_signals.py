"""SIGINT and SIGTERM stop a sweep cleanly at any moment: the documented exit status, the
`--resume` hint, no MLflow run left RUNNING, no Ray process left behind, and a resume that
finishes with one run per trial and no epoch logged twice.

One sweep is stopped seven times in a row (during Ray's start; each signal during the baseline,
before the first report and mid-trial; the last one sent twice, the forced stop), each stop's
`--resume` being the next launch: every resume is tested against the state the previous stop
left, in the time of one sweep. The resume that finishes is then stopped while Ray shuts down.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from support.cli import start_cli, trial_runs, write_config
from support.faults import FaultPlan

NUM_TRIALS = 4
EPOCHS = 3
# Epochs paced to 1.5 s, so that "a trial started" comes well before its first report.
FAULTS = FaultPlan(epoch_delay_seconds=1.5)

DURING_BASELINE = re.compile(r"dense baseline: training")
BEFORE_FIRST_REPORT = re.compile(r", [1-9]\d* running \| best val_acc - ")
MID_TRIAL = re.compile(r", [1-9]\d* running \| best val_acc 0\.\d+ ")
SHUTTING_DOWN_RAY = re.compile(r"shutting down Ray")
CONNECTED = "connected to local Ray"


def during_ray_start(driver: subprocess.Popen, output: str) -> bool:
    """Ray's first process is up and the driver has not yet said it is connected: inside
    `ray.init`, where Ray's own SIGTERM handler used to be installed."""
    if CONNECTED in output:
        raise AssertionError(f"Ray started before the test saw it starting:\n{output[-3000:]}")
    children = psutil.Process(driver.pid).children(recursive=True)
    return any(child.name() == "gcs_server" for child in children)


Moment = re.Pattern | Callable[[subprocess.Popen, str], bool]


def wait_for(driver: subprocess.Popen, log: Path, moment: Moment) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        output = log.read_text()
        if moment.search(output) if isinstance(moment, re.Pattern) else moment(driver, output):
            return
        assert driver.poll() is None, f"driver ended early:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"never at the moment {moment}:\n{log.read_text()[-3000:]}")


def stop_at(
    folder: Path,
    args: list[str],
    moment: Moment,
    signum: int,
    step: int,
    twice: bool,
    faults: FaultPlan = FAULTS,
    resumable: bool = True,
) -> str:
    """Launch (or resume), send `signum` at `moment` (`twice`: again 0.3 s later, the forced
    stop), and check the clean stop. Returns the driver's output."""
    log = folder / f"step{step}.log"
    driver = start_cli(*args, cwd=folder, log=log, faults=faults)
    try:
        wait_for(driver, log, moment)
        ray_processes = psutil.Process(driver.pid).children(recursive=True)
        driver.send_signal(signum)
        if twice:
            time.sleep(0.3)
            driver.send_signal(signum)
        status = driver.wait(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    output = log.read_text()
    assert status == 128 + signum, output[-3000:]
    assert "Traceback" not in output and "*** SIGTERM" not in output, output[-3000:]
    if resumable:
        assert f"--resume test-sweep --storage-path {folder / 'ray_results'}" in output
    _, alive = psutil.wait_procs(ray_processes, timeout=30)
    assert not alive, f"left behind: {[p.info for p in alive]}"
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    assert not running, [run.info.run_name for run in running]
    return output


@pytest.mark.slow
def test_sigint_and_sigterm_at_any_moment_stop_cleanly_and_resume(tmp_path):
    config = write_config(tmp_path, {
        "search.num_samples": NUM_TRIALS, "scheduler.name": "none",
        "stopping.max_epochs": EPOCHS, "scheduler.max_t": EPOCHS,
        "decomposition.seed_epochs": 1,
    })  # fmt: skip
    resume = ["--resume", "test-sweep", "--storage-path", str(tmp_path / "ray_results")]
    plan = [  # (arguments, moment, signal, a second signal right after)
        ([str(config)], DURING_BASELINE, signal.SIGINT, False),
        (resume, during_ray_start, signal.SIGTERM, False),
        (resume, DURING_BASELINE, signal.SIGTERM, False),
        (resume, BEFORE_FIRST_REPORT, signal.SIGINT, False),
        (resume, BEFORE_FIRST_REPORT, signal.SIGTERM, False),
        (resume, MID_TRIAL, signal.SIGINT, False),
        (resume, MID_TRIAL, signal.SIGTERM, True),
    ]
    for step, (args, moment, signum, twice) in enumerate(plan, start=1):
        output = stop_at(tmp_path, args, moment, signum, step, twice)
        if moment is during_ray_start:  # stopped once Ray had started, before it was used
            assert CONNECTED not in output and "SIGTERM" in output, output[-3000:]
    assert len(trial_runs(tmp_path)) < NUM_TRIALS or any(
        run.info.status != "FINISHED" for run in trial_runs(tmp_path)
    ), "the sweep finished before its last stop"

    # The last resume runs to its end; Ctrl-C while Ray shuts down waits for the shutdown.
    paced_shutdown = FaultPlan(epoch_delay_seconds=1.5, shutdown_delay_seconds=3.0)
    output = stop_at(tmp_path, resume, SHUTTING_DOWN_RAY, signal.SIGINT, len(plan) + 1, False,
                     faults=paced_shutdown, resumable=False)  # fmt: skip
    assert "sweep test-sweep: 4 trials (0 failed)" in output, output[-3000:]
    runs = trial_runs(tmp_path)
    trial_ids = [run.data.tags["tucker_sweep.trial_id"] for run in runs]
    assert len(trial_ids) == len(set(trial_ids)) == NUM_TRIALS
    assert {run.info.status for run in runs} == {"FINISHED"}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (run.info.run_name, steps)


@pytest.mark.slow
def test_seed_stopped_while_it_analyses_leaves_no_run_running(tmp_path):
    # Many thresholds and a wider net: the analysis and its plot after the baseline run is
    # created take long enough for the signal to land there.
    thresholds = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995]
    config = write_config(tmp_path, {
        "decomposition.seed_epochs": 1, "decomposition.thresholds": thresholds,
        "model.options": {"width": 32},
    })  # fmt: skip
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    log = tmp_path / "seed.log"
    driver = start_cli("seed", str(config), "--out", str(tmp_path / "seed"), cwd=tmp_path, log=log)
    try:
        deadline = time.monotonic() + 240
        while not _runs_with_status(client, "RUNNING"):  # the baseline run: now it analyses
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        driver.send_signal(signal.SIGTERM)
        status = driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    output = log.read_text()
    assert status == 143, output[-3000:]
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1] == (
        "tucker-sweep: seed stopped by SIGTERM before it finished; no MLflow run is left RUNNING"
    ), output[-3000:]
    assert _runs_with_status(client, "RUNNING") == []
    assert [run.info.run_name for run in _runs_with_status(client, "KILLED")] == ["baseline"]


def _runs_with_status(client: MlflowClient, status: str) -> list:
    experiment = client.get_experiment_by_name("tests")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"attributes.status = '{status}'")
