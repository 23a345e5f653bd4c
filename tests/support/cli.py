"""Running the real CLI (or the sweep driver with injected faults) in a scratch folder, and
reading back the real MLflow store."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from support.faults import FaultPlan

CLI = [sys.executable, "-c", "from sweep.cli import main; main()"]
TESTS_DIR = Path(__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    """The tests choose their own store and cluster: a developer's settings must not leak in.
    The tests folder is on PYTHONPATH, so that Ray's workers can import support.faults."""
    drop = {"MLFLOW_TRACKING_URI", "RAY_ADDRESS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    return env


def _command(args: tuple[str, ...], faults: FaultPlan | None) -> list[str]:
    if faults is None:
        return [*CLI, *args]
    plan = json.dumps(dataclasses.asdict(faults))
    return [sys.executable, "-m", "support.launch_with_faults", *args, "--faults", plan]


def run_cli(
    *args: str, cwd: Path, timeout: float = 900, faults: FaultPlan | None = None
) -> subprocess.CompletedProcess:
    """The CLI with `args`; with `faults`, `launch` through support.launch_with_faults."""
    return subprocess.run(
        _command(args, faults), cwd=cwd, env=cli_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_cli(
    *args: str, cwd: Path, log: Path, faults: FaultPlan | None = None, sigint_ignored: bool = False
) -> subprocess.Popen:
    """The CLI in the background; `sigint_ignored`: started as a script's `cmd &` starts it,
    with SIGINT ignored (what a process then inherits), so that only its own handler stops it."""
    handle = log.open("w")
    return subprocess.Popen(
        _command(args, faults), cwd=cwd, env=cli_env(), stdout=handle, stderr=subprocess.STDOUT,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )  # fmt: skip


def write_config(folder: Path, overrides: dict) -> Path:
    """A small, fast digits sweep (narrow VGG, 2 concurrent 1-CPU trials) with overrides."""
    config = {
        "name": "test-sweep",
        "data": {"name": "digits"},
        "model": {"name": "vgg_small", "options": {"width": 16}},
        "decomposition": {"seed": True, "seed_epochs": 4, "init": ["hooi", "random"]},
        "search": {"num_samples": 8, "lr": {"low": 0.03, "high": 0.1}, "seed": 0},
        "scheduler": {"name": "asha", "max_t": 6, "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpu": 1},
        "stopping": {"max_epochs": 6, "target_accuracy": 0.9},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "tests"},
        "cluster": {"storage_path": str(folder / "ray_results")},
        # Every trial times its model at each batch size: small ones keep the tests quick.
        "deploy": {"batch_sizes": [1, 8]},
    }
    for key, value in overrides.items():
        node = config
        *sections, last = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = value
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def trial_runs(folder: Path, experiment: str = "tests") -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs(
        [found.experiment_id], filter_string="tags.`tucker_sweep.kind` = 'trial'"
    )


def run_cli_in_process(*args: str, cwd: Path, capfd) -> subprocess.CompletedProcess:
    """The real CLI entry point (`sweep.cli.main`) in this process, for input that must fail
    before any training, Ray or server: the same code path as `run_cli` without starting an
    interpreter and importing torch for every case (seconds each). `capfd` is pytest's
    fixture: it captures what reaches file descriptors 1 and 2, C-level writes included.
    What the CLI changes in the process (environment, working directory, signal handlers,
    warning display, MLflow's log level) is put back afterwards."""
    from sweep.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_handlers = {
        signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    mlflow_logger = logging.getLogger("mlflow")
    saved_level = mlflow_logger.level
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        os.environ.pop(name, None)
    capfd.readouterr()  # what came before is not this command's
    try:
        os.chdir(cwd)
        with warnings.catch_warnings():
            try:
                main(list(args))
                status = 0
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for signum, handler in saved_handlers.items():
            signal.signal(signum, handler)
        mlflow_logger.setLevel(saved_level)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(["tucker-sweep", *args], status, out, err)
