"""A trial's results and kept checkpoints, read from the files Ray Tune leaves on storage:

    <experiment>/<trial folder>/result.json         one JSON object per report (JSON lines):
                                                    trial_id, training_iteration, the metrics,
                                                    checkpoint_dir_name (None without one)
    <experiment>/<trial folder>/checkpoint_NNNNNN/  the checkpoints Tune kept (it deletes the
                                                    others), each holding CHECKPOINT_FILE

(ray/tune/logger/json.py writes result.json; ray/train/_internal/storage.py names the
checkpoint folders.) Tune's own readers, ExperimentAnalysis and ResultGrid, load the
experiment state, which embeds cloudpickled objects: reading it runs whatever code whoever can
write the storage put there. This reader parses JSON and loads checkpoints with
torch.load(weights_only=True), so a crafted file can fail a read but never run code.
"""

from __future__ import annotations

import io
import json
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from sweep.errors import ReportError
from sweep.sweep_files.store import filesystem

CHECKPOINT_FILE = "checkpoint.ckpt"  # the Lightning checkpoint inside each Tune checkpoint
RESULT_FILE = "result.json"
CHECKPOINT_PREFIX = "checkpoint_"


@dataclass(frozen=True)
class KeptCheckpoint:
    """A checkpoint Tune kept for a trial, and the epoch (training_iteration) it was saved at.
    Picklable (a Ray task can take it): pyarrow filesystems pickle."""

    filesystem: pafs.FileSystem
    path: str  # the checkpoint folder, within `filesystem`
    epoch: int

    @contextmanager
    def lightning_file(self) -> Iterator[Path]:
        """The Lightning checkpoint file, local for the duration (downloaded if remote)."""
        source = f"{self.path}/{CHECKPOINT_FILE}"
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            yield Path(source)
            return
        with tempfile.TemporaryDirectory(prefix="tucker-sweep-ckpt-") as folder:
            local = Path(folder) / CHECKPOINT_FILE
            with self.filesystem.open_input_stream(source) as stream:
                local.write_bytes(stream.read())
            yield local


def _rows(fs: pafs.FileSystem, trial_folder: str) -> list[dict[str, Any]]:
    """The trial's reports, oldest first. A line cut short (a driver killed mid-write) or
    anything else that is not a JSON object is skipped."""
    try:
        with fs.open_input_stream(f"{trial_folder}/{RESULT_FILE}") as stream:
            text = stream.read().decode("utf-8", errors="replace")
    except (FileNotFoundError, OSError):
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _folders(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    return [
        info
        for info in fs.get_file_info(pafs.FileSelector(path))
        if info.type == pafs.FileType.Directory
    ]


def _experiment_root(experiment_path: str) -> tuple[pafs.FileSystem, str]:
    fs, root = filesystem(experiment_path)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise ReportError(
            f"no Ray Tune results in {experiment_path}: pass --storage-path (the "
            "cluster.storage_path the sweep ran with, e.g. ./ray_results)"
        )
    return fs, root


def _trial_folder(
    fs: pafs.FileSystem, root: str, trial_id: str
) -> tuple[str, list[dict[str, Any]]] | None:
    """The trial's folder and its reports. Tune names trial folders
    `<trainable>_<trial_id>_<index>_<params>_<date>`: those naming the trial are read first, the
    rest only if none does (a custom folder name); result.json's trial_id decides."""
    folders = [info.path for info in _folders(fs, root)]
    named = [path for path in folders if f"_{trial_id}_" in path.rsplit("/", 1)[-1]]
    for path in named or folders:
        rows = _rows(fs, path)
        if rows and rows[0].get("trial_id") == trial_id:
            return path, rows
        if not rows and path in named:
            return path, rows  # no report yet: its name is all that says whose it is
    return None


def _saved_epoch(checkpoint: KeptCheckpoint) -> int | None:
    """The epoch a Lightning checkpoint was saved at, from the checkpoint itself (Lightning
    stores the 0-based epoch that was ending); None for a file that is no such checkpoint."""
    try:
        with checkpoint.lightning_file() as path:
            data = io.BytesIO(path.read_bytes())
        saved = torch.load(data, map_location="cpu", weights_only=True)
        return int(saved["epoch"]) + 1
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, TypeError,
            ValueError):  # fmt: skip
        return None


def kept_checkpoints(experiment_path: str, trial_id: str) -> list[KeptCheckpoint]:
    """The checkpoints Tune kept on disk for the trial (the best by val_acc and the latest),
    oldest first; empty if it has none. ReportError if `experiment_path` is no folder."""
    fs, root = _experiment_root(experiment_path)
    found = _trial_folder(fs, root, trial_id) if trial_id else None
    if found is None:
        return []
    trial_folder, rows = found
    # The last report naming a folder wins: a retried trial reports an epoch again.
    epochs = {
        row["checkpoint_dir_name"]: int(row["training_iteration"])
        for row in rows
        if isinstance(row.get("checkpoint_dir_name"), str)
        and isinstance(row.get("training_iteration"), int)
    }
    kept = []
    for info in _folders(fs, trial_folder):
        if not info.base_name.startswith(CHECKPOINT_PREFIX):
            continue
        if fs.get_file_info(f"{info.path}/{CHECKPOINT_FILE}").type != pafs.FileType.File:
            continue  # deleted or still being written
        epoch = epochs.get(info.base_name)
        if epoch is None:
            # Saved, but the driver stopped before it wrote the report that names it.
            epoch = _saved_epoch(KeptCheckpoint(fs, info.path, 0))
        if epoch is not None:
            kept.append(KeptCheckpoint(fs, info.path, epoch))
    return sorted(kept, key=lambda checkpoint: (checkpoint.epoch, checkpoint.path))


def choose_kept(
    kept: list[KeptCheckpoint], val_acc: dict[int, float]
) -> tuple[KeptCheckpoint, float]:
    """The kept checkpoint with the best logged val_acc at its epoch (ties: the later), and
    that val_acc. ReportError when no kept checkpoint has a logged val_acc."""
    scored = [(val_acc[c.epoch], c.epoch, c) for c in kept if c.epoch in val_acc]
    if not scored:
        epochs = ", ".join(str(c.epoch) for c in kept) or "none"
        raise ReportError(f"no logged val_acc for the kept checkpoints (epochs {epochs})")
    logged, _, checkpoint = max(scored, key=lambda item: item[:2])
    return checkpoint, logged
