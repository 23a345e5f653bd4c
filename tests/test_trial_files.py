"""Reading a trial's kept checkpoints from the files Tune leaves (result.json, checkpoint_*
folders), in the layout of Ray 2.x, without Tune's pickled state (issue 19)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch

from sweep.errors import ReportError
from sweep.sweep_files.trial_files import CHECKPOINT_FILE, KeptCheckpoint, kept_checkpoints

TRIAL = "e2998_00002"


def _trial(experiment: Path, trial_id: str, rows: list[dict], checkpoints: dict) -> Path:
    """A trial folder named as Tune names it, with its result rows and checkpoint folders
    (name -> the epoch stored in its Lightning checkpoint, or raw bytes)."""
    folder = experiment / f"run_trial_{trial_id}_2_compression=2.0,lr=0.05_2026-12-01_09-30-45"
    folder.mkdir(parents=True)
    lines = [json.dumps({"trial_id": trial_id, **row}) for row in rows]
    (folder / "result.json").write_text("\n".join(lines) + "\n")
    for name, content in checkpoints.items():
        (folder / name).mkdir()
        if isinstance(content, bytes):
            (folder / name / CHECKPOINT_FILE).write_bytes(content)
        elif content is not None:
            torch.save({"epoch": content - 1, "state_dict": {}}, folder / name / CHECKPOINT_FILE)
    return folder


def test_kept_checkpoints_are_the_folders_on_disk_at_the_epochs_their_rows_name(tmp_path):
    rows = [
        {"training_iteration": 1, "checkpoint_dir_name": "checkpoint_000000", "val_acc": 0.5},
        {"training_iteration": 2, "checkpoint_dir_name": None, "val_acc": 0.6},
        {"training_iteration": 3, "checkpoint_dir_name": "checkpoint_000001", "val_acc": 0.7},
        # Retried from checkpoint_000001: epoch 4 again, into a new folder.
        {"training_iteration": 4, "checkpoint_dir_name": "checkpoint_000002", "val_acc": 0.8},
        {"training_iteration": 4, "checkpoint_dir_name": "checkpoint_000003", "val_acc": 0.8},
    ]
    checkpoints = {
        "checkpoint_000001": 9,  # the row decides, not the file: it says epoch 3
        "checkpoint_000003": 4,
        "checkpoint_000004": 5,  # saved, but the driver stopped before its row: from the file
        "checkpoint_000005": b"not a checkpoint",  # no row, unreadable: skipped
        "checkpoint_000006": None,  # deleted by Tune (or still being written): skipped
    }
    folder = _trial(tmp_path, TRIAL, rows, checkpoints)
    (folder / "result.json").open("a").write('{"trial_id": "e2998_00002", "training_it')
    _trial(tmp_path, "e2998_00003", rows[:1], {"checkpoint_000000": 1})

    kept = kept_checkpoints(str(tmp_path), TRIAL)
    assert [(Path(c.path).name, c.epoch) for c in kept] == [
        ("checkpoint_000001", 3),
        ("checkpoint_000003", 4),
        ("checkpoint_000004", 5),
    ]
    assert kept_checkpoints(str(tmp_path), "e2998_00009") == []
    assert kept_checkpoints(str(tmp_path), "") == []


def test_a_trial_is_found_by_its_result_rows_whatever_its_folder_is_called(tmp_path):
    folder = _trial(tmp_path, TRIAL, [{"training_iteration": 1,
                                       "checkpoint_dir_name": "checkpoint_000000"}],
                    {"checkpoint_000000": 1})  # fmt: skip
    folder.rename(tmp_path / "my_own_trial_name")
    assert [c.epoch for c in kept_checkpoints(str(tmp_path), TRIAL)] == [1]


def test_no_experiment_folder_says_where_to_look(tmp_path):
    with pytest.raises(ReportError, match="pass --storage-path"):
        kept_checkpoints(str(tmp_path / "nosuch"), TRIAL)


def test_a_remote_checkpoint_is_read_from_a_local_copy(tmp_path):
    _trial(tmp_path, TRIAL, [], {"checkpoint_000000": 2})
    remote = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    [folder] = [p.name for p in tmp_path.iterdir()]
    checkpoint = KeptCheckpoint(remote, f"{folder}/checkpoint_000000", 2)
    checkpoint = pickle.loads(pickle.dumps(checkpoint))  # as a Ray task receives it
    with checkpoint.lightning_file() as local:
        assert not local.is_relative_to(tmp_path)
        original = tmp_path / folder / "checkpoint_000000" / CHECKPOINT_FILE
        assert local.read_bytes() == original.read_bytes()
    assert not local.exists()
