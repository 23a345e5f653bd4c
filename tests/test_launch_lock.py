"""One driver per sweep name and storage path (issue 19): a second `launch` of a name whose lock
is held is refused in one line, before MLflow hears of it; the lock is held while a launch
runs, and a launch that ends leaves neither the lock file nor a storage folder it made."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock, Timeout
from support.cli import run_cli_in_process, write_config
from support.report_store import free_port

from sweep.sweep_files.lock import SweepLockedError, sweep_lock
from sweep.tuning.launch import launch_sweep
from sweep.tuning.launch_config import sweep_config

SWEEP = "test-sweep"  # write_config's name


def _nowhere() -> str:
    """A Ray address where nothing listens: a launch that got past the lock stops there, in a
    second, with a one-line error of its own."""
    return f"127.0.0.1:{free_port()}"


def test_a_second_launch_of_a_name_is_refused_while_its_lock_is_held(tmp_path, capfd):
    config = write_config(tmp_path, {})
    storage = tmp_path / "ray_results"
    storage.mkdir()
    holder = FileLock(storage / f"{SWEEP}.lock", timeout=0)
    holder.acquire()
    try:
        result = run_cli_in_process(
            "launch", str(config), "--address", _nowhere(), cwd=tmp_path, capfd=capfd
        )
    finally:
        holder.release()
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert f"sweep {SWEEP!r} is being launched by another process" in lines[0]
    # Refused before MLflow was touched: not even the store was created.
    assert not (tmp_path / "mlflow.db").exists()
    assert not (storage / SWEEP).exists()


def test_a_launch_that_ends_leaves_no_lock_file_and_no_storage_folder(tmp_path, capfd):
    config = write_config(tmp_path, {})
    result = run_cli_in_process(
        "launch", str(config), "--address", _nowhere(), cwd=tmp_path, capfd=capfd
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot reach the Ray cluster" in result.stderr
    assert not (tmp_path / "ray_results").exists()  # the lock made it; nothing came into it

    (tmp_path / "ray_results").mkdir()
    result = run_cli_in_process(
        "launch", str(config), "--address", _nowhere(), cwd=tmp_path, capfd=capfd
    )
    assert result.returncode == 2 and "cannot reach the Ray cluster" in result.stderr
    assert list((tmp_path / "ray_results").iterdir()) == []


class _Stop(Exception):
    pass


def test_the_lock_is_held_while_the_launch_runs(tmp_path):
    # A model with a depthwise conv makes the launch report it before MLflow or Ray: the
    # progress callback looks at the lock then, and stops the launch.
    path = write_config(
        tmp_path, {"model": {"factory": "support.user_models:with_a_depthwise_conv"}}
    )
    lock = tmp_path / "ray_results" / f"{SWEEP}.lock"
    seen = []

    def progress(message: str) -> None:
        if message.startswith("left dense"):
            with pytest.raises(Timeout):
                FileLock(lock, timeout=0).acquire()
            seen.append(message)
            raise _Stop

    with pytest.raises(_Stop):
        launch_sweep(sweep_config(path, None, None, {}), progress=progress)
    assert seen
    assert not lock.exists() and not lock.parent.exists()


def test_a_remote_storage_is_locked_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with sweep_lock("s3://bucket/sweeps", "x") as path:
        assert path.is_relative_to(tmp_path / ".cache" / "tucker-sweep" / "locks")
        with pytest.raises(SweepLockedError), sweep_lock("s3://bucket/sweeps/", "x"):
            pass
        with sweep_lock("s3://other-bucket/sweeps", "x") as other:
            assert other != path
    assert not Path(path).exists()
