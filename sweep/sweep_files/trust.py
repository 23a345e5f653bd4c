"""The check before `launch --resume` hands a sweep's folder to Tune's restore, which unpickles
what the folder holds (tuner.pkl, the experiment state, the searcher's and callbacks' states):
whoever can write those files can run code in the driver. So a local folder is only restored
when this user (or root) owns the storage path, the sweep's folder and everything in it, and
neither group nor others may write any of them. Remote storage (s3://, gs://) has no such
check: anyone who can write the bucket is trusted (README, "Stopping a sweep").
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from sweep.errors import ConfigError
from sweep.sweep_files.store import SweepStore, is_remote

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class UntrustedStorageError(ConfigError):
    """A sweep folder that someone else could have written: not restored."""


def _paths(storage: Path, experiment: Path) -> Iterator[Path]:
    """The storage folder, the sweep's folder and everything under it."""
    yield storage
    yield experiment
    for folder, subfolders, files in os.walk(experiment):
        for name in (*subfolders, *files):
            yield Path(folder, name)


def _problem(path: Path) -> str | None:
    try:
        info = path.stat()  # a symlink's target is what Tune would read
    except FileNotFoundError:
        return None  # removed meanwhile (or a dangling link): nothing to read
    if info.st_uid not in (os.geteuid(), 0):
        return f"is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    if info.st_mode & _OTHERS_WRITE:
        who = "group and others" if info.st_mode & stat.S_IWOTH else "its group"
        return f"is writable by {who} (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def check_restorable(store: SweepStore) -> None:
    """Raise UntrustedStorageError, naming the first path at fault, unless the sweep's local
    folder can be restored safely; remote storage passes (it is trusted as a whole)."""
    if is_remote(store.storage_path):
        return
    storage = Path(store.storage_path.removeprefix("file://"))
    experiment = Path(store.experiment_path.removeprefix("file://"))
    for path in _paths(storage, experiment):
        problem = _problem(path)
        if problem:
            raise UntrustedStorageError(
                f"refusing to resume sweep {store.name!r}: {path} {problem}, and Ray Tune's "
                "restore unpickles the sweep's files: whoever can write them can run code here "
                "(if you trust what is there, make it yours: chown -R, chmod -R go-w)"
            )
