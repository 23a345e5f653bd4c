"""Checks of the folders a command will write to, made before it does any work: an output
path that is a file, or that cannot be created, should fail in one line at once, not after
minutes of training or with a run left open in MLflow."""

from __future__ import annotations

import os
from pathlib import Path

from sweep.errors import ConfigError


def _is_remote(path: str) -> bool:
    """s3://, gs://... are checked by whoever writes there (Ray, pyarrow), not here."""
    return "://" in path and not path.startswith("file://")


def _first_existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists (the root always does)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(path: str | Path, label: str) -> None:
    """Raise ConfigError, naming `label` (the flag or key), unless `path` is a folder this
    process can write to or could create."""
    text = str(path)
    if _is_remote(text):
        return
    folder = Path(os.path.abspath(os.path.expanduser(text.removeprefix("file://"))))
    existing = _first_existing(folder)
    if existing == folder and not folder.is_dir():
        raise ConfigError(f"{label}: {text} is a file, not a folder")
    if not existing.is_dir():
        raise ConfigError(f"{label}: cannot create folder {text}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "folder" if existing == folder else "its parent folder"
        raise ConfigError(f"{label}: cannot write to {text}: {what} {existing} is not writable")
