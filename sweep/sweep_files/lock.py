"""One driver per sweep: a lock on the storage path for the sweep's name, held from before
MLflow hears of the sweep until the driver ends. Without it, two `launch --name X` at once both
ran to the end into one MLflow experiment (two sweep runs of one name, every epoch logged
twice), or crashed creating a new store's tables together.

    <storage_path>/<name>.lock                           a local folder (or NFS: flock, if the
                                                         server supports locks)
    ~/.cache/tucker-sweep/locks/<name>-<hash>.lock       s3://, gs://: a bucket has no locks,
                                                         so this guards one machine only

The lock is flock(2) (filelock): the kernel releases it when the process ends, however it
ends. The file is removed on release, and so are the folders the lock made if nothing else
came into them: a launch refused for its input leaves no storage folder behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from sweep.errors import ConfigError
from sweep.sweep_files.store import absolute_storage_path, is_remote

REMOTE_LOCKS = Path("~/.cache/tucker-sweep/locks")


class SweepLockedError(ConfigError):
    """Another driver holds the sweep's lock."""


def lock_path(storage_path: str, name: str) -> Path:
    """The lock file of sweep `name` on `storage_path` (a folder or a URI)."""
    storage = absolute_storage_path(storage_path)
    if is_remote(storage):
        key = hashlib.sha256(f"{storage.rstrip('/')}/{name}".encode()).hexdigest()[:16]
        return REMOTE_LOCKS.expanduser() / f"{name}-{key}.lock"
    return Path(storage.removeprefix("file://")) / f"{name}.lock"


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns those created, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    if missing:
        missing[0].mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: the sweep (or someone) wrote there


@contextmanager
def sweep_lock(storage_path: str, name: str) -> Iterator[Path]:
    """Hold sweep `name`'s lock on `storage_path` for the block; SweepLockedError at once (no
    waiting) when another process holds it, ConfigError when it cannot be created."""
    path = lock_path(storage_path, name)
    created: list[Path] = []
    try:
        created = _make_folders(path.parent)
        lock = FileLock(path, timeout=0)
        lock.acquire()
    except OSError as error:  # filelock's Timeout is a TimeoutError, an OSError
        _remove_empty(created)
        if isinstance(error, Timeout):
            raise SweepLockedError(
                f"sweep {name!r} is being launched by another process on {storage_path} (it "
                f"holds {path}); wait for it to end, or choose another --name"
            ) from None
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"cannot lock sweep {name!r} at {path}: {reason}") from None
    try:
        yield path
    finally:
        # Unlinked while still held: a process that opened the file just now finds its inode
        # gone and is refused, rather than locking a file nobody else can see.
        with suppress(OSError):
            path.unlink()
        lock.release()
        _remove_empty(created)
