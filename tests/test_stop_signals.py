"""SIGINT and SIGTERM stop a sweep cleanly at any moment: the documented exit status, the
`--resume` hint, no MLflow run left RUNNING, no Ray process left behind, and a resume that
finishes with one run per trial and no epoch logged twice.

One sweep is stopped six times in a row (each signal during the baseline, before the first
report and mid-trial; the last one sent twice, the forced stop), each stop's `--resume` being
the next launch: every resume is tested against the state the previous stop left, in the time
of one sweep.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from support.cli import run_cli, start_cli, trial_runs, write_config
from support.faults import FaultPlan

NUM_TRIALS = 4
EPOCHS = 3
# Epochs paced to 1.5 s, so that "a trial started" comes well before its first report.
FAULTS = FaultPlan(epoch_delay_seconds=1.5)

DURING_BASELINE = re.compile(r"dense baseline: training")
BEFORE_FIRST_REPORT = re.compile(r", [1-9]\d* running \| best val_acc - ")
MID_TRIAL = re.compile(r", [1-9]\d* running \| best val_acc 0\.\d+ ")


def wait_for_line(driver: subprocess.Popen, log: Path, pattern: re.Pattern) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if pattern.search(log.read_text()):
            return
        assert driver.poll() is None, f"driver ended early:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no line matching {pattern.pattern!r}:\n{log.read_text()[-3000:]}")


def stop_at(
    folder: Path, args: list[str], moment: re.Pattern, signum: int, step: int, twice: bool
) -> str:
    """Launch (or resume), send `signum` at `moment` (`twice`: again 0.3 s later, the forced
    stop), and check the clean stop. Returns the driver's output."""
    log = folder / f"step{step}.log"
    driver = start_cli(*args, cwd=folder, log=log, faults=FAULTS)
    try:
        wait_for_line(driver, log, moment)
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
        (resume, DURING_BASELINE, signal.SIGTERM, False),
        (resume, BEFORE_FIRST_REPORT, signal.SIGINT, False),
        (resume, BEFORE_FIRST_REPORT, signal.SIGTERM, False),
        (resume, MID_TRIAL, signal.SIGINT, False),
        (resume, MID_TRIAL, signal.SIGTERM, True),
    ]
    for step, (args, moment, signum, twice) in enumerate(plan, start=1):
        stop_at(tmp_path, args, moment, signum, step, twice)
    assert len(trial_runs(tmp_path)) < NUM_TRIALS or any(
        run.info.status != "FINISHED" for run in trial_runs(tmp_path)
    ), "the sweep finished before its last stop"

    result = run_cli(*resume, cwd=tmp_path, faults=FAULTS)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = trial_runs(tmp_path)
    trial_ids = [run.data.tags["tucker_sweep.trial_id"] for run in runs]
    assert len(trial_ids) == len(set(trial_ids)) == NUM_TRIALS
    assert {run.info.status for run in runs} == {"FINISHED"}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (run.info.run_name, steps)
