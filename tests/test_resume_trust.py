"""`launch --resume` hands the sweep's folder to Ray Tune's restore, which unpickles tuner.pkl:
a local folder that another account owns, or that group or others may write, is refused in
one line before anything runs (issue 19)."""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
import stat
from pathlib import Path

import pytest
from support.cli import run_cli_in_process, write_config
from support.report_store import free_port

SWEEP = "test-sweep"  # write_config's name


class _Payload:
    """Unpickling it runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return (os.system, (self.command,))


def _interrupted_sweep(folder: Path) -> Path:
    """A sweep's folder as `launch` leaves it (its stored config, Tune's tuner.pkl), with a
    crafted tuner.pkl. Returns the experiment folder."""
    config = write_config(folder, {})
    experiment = folder / "ray_results" / SWEEP
    (experiment / "tucker_sweep").mkdir(parents=True)
    shutil.copy(config, experiment / "tucker_sweep" / "config.yaml")
    (experiment / "tuner.pkl").write_bytes(pickle.dumps(_Payload(folder / "marker")))
    return experiment


def _resume(folder: Path, capfd):
    # Nothing listens at the Ray address: a resume that got past the check stops there, in a
    # second and before Tune's restore, with a one-line error of its own.
    return run_cli_in_process(
        "launch", "--resume", SWEEP, "--storage-path", str(folder / "ray_results"),
        "--address", f"127.0.0.1:{free_port()}", cwd=folder, capfd=capfd,
    )  # fmt: skip


def _refused(folder: Path, result, problem: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert f"refusing to resume sweep {SWEEP!r}" in lines[0] and problem in lines[0]
    assert not (folder / "marker").exists()
    assert not (folder / "mlflow.db").exists()  # refused before MLflow was touched


@pytest.mark.parametrize("target", ["storage", "experiment", "tuner.pkl"])
@pytest.mark.parametrize(
    ("bits", "who"),
    [
        pytest.param(stat.S_IWOTH, "group and others", id="o+w"),
        pytest.param(stat.S_IWGRP, "its group", id="g+w"),
    ],
)
def test_resume_refuses_a_folder_that_others_may_write(tmp_path, capfd, target, bits, who):
    experiment = _interrupted_sweep(tmp_path)
    path = {"storage": experiment.parent, "experiment": experiment}.get(target)
    path = path or experiment / target
    path.chmod(path.stat().st_mode | bits)
    result = _resume(tmp_path, capfd)
    _refused(tmp_path, result, f"{path} is writable by {who}")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another uid needs root")
def test_resume_refuses_a_folder_another_user_owns(tmp_path, capfd):
    experiment = _interrupted_sweep(tmp_path)
    os.chown(experiment, 4242, -1)
    result = _resume(tmp_path, capfd)
    _refused(tmp_path, result, f"{experiment} is owned by uid 4242, not by this user")


def test_resume_of_an_own_private_folder_goes_on(tmp_path, capfd):
    _interrupted_sweep(tmp_path)
    result = _resume(tmp_path, capfd)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot reach the Ray cluster" in result.stderr  # past the check, to Ray
    assert not (tmp_path / "marker").exists()
