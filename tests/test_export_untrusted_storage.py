"""`export` reads a sweep from storage that others may write (an NFS share, a bucket) without
unpickling anything: crafted pickles in place of Tune's state never run (issue 19)."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
from pathlib import Path

import pytest
from support.cli import run_cli_in_process
from support.report_store import SWEEP, shared_sweep

from sweep.sweep_files.trial_files import CHECKPOINT_FILE, kept_checkpoints
from sweep.tracking.names import TRIAL_ID_TAG


class _Payload:
    """Unpickling it runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return (os.system, (self.command,))


def _plant(experiment: Path, marker: Path) -> None:
    """Every file Tune would unpickle, crafted: the newest experiment state (its JSON embeds
    cloudpickled objects), tuner.pkl, the callbacks' and searcher's states, params.pkl."""
    payload = pickle.dumps(_Payload(marker))
    state = {"_type": "CLOUDPICKLE_FALLBACK", "value": payload.hex()}
    (experiment / "experiment_state-2999-12-31_23-59-59.json").write_text(json.dumps(state))
    for name in ("tuner.pkl", "callback-states-2999-12-31_23-59-59.pkl", "searcher-state.pkl"):
        (experiment / name).write_bytes(payload)
    for trial in experiment.glob("run_trial_*"):
        (trial / "params.pkl").write_bytes(payload)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return shared_sweep(tmp_path_factory)


@pytest.mark.slow
def test_export_runs_no_code_from_crafted_pickles_in_the_storage(sweep, tmp_path, capfd):
    storage = tmp_path / "storage"
    shutil.copytree(sweep.folder / "ray_results", storage)
    marker = tmp_path / "marker"
    _plant(storage / SWEEP, marker)

    out = tmp_path / "export"
    result = run_cli_in_process(
        "export", SWEEP, "--storage-path", str(storage), "--no-register", "--out", str(out),
        # The small test sweep may have no trial within 0.5 pt of dense: any recommended one.
        "--max-drop", "100", *sweep.store_args(), cwd=sweep.folder, capfd=capfd,
    )  # fmt: skip
    assert not marker.exists(), "export unpickled a file from the storage path"
    assert result.returncode == 0, result.stderr[-3000:]
    source = json.loads((out / "model.json").read_text())["source"]
    # The checkpoint exported is one of those on disk, at the epoch its result row names.
    trial_id = sweep.client().get_run(source["trial_run_id"]).data.tags[TRIAL_ID_TAG]
    kept = kept_checkpoints(str(storage / SWEEP), trial_id)
    assert source["epoch"] in {checkpoint.epoch for checkpoint in kept}
    assert all(Path(c.path, CHECKPOINT_FILE).is_file() for c in kept)
