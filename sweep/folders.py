"""Checks of the folders a command will write to, made before it does any work: an output
path that is a file, or that cannot be created, should fail in one line at once, not after
minutes of training or with a run left open in MLflow. And the one check of a name that
becomes a folder (a sweep's, a trial's): a plain folder name, never a path out of its parent."""

from __future__ import annotations

import os
from pathlib import Path

from sweep.errors import ConfigError, TuckerSweepError


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


# A folder name is one path component: NAME_MAX bytes on Linux and macOS.
_NAME_MAX_BYTES = 255


def plain_name(name: str, what: str, error: type[TuckerSweepError] = ConfigError) -> str:
    """`name`, if it is a plain folder name: one path component (no '/' or '\\', not '.' or
    '..', not empty), without NUL or control characters, of at most 255 bytes. A sweep or
    trial name becomes a folder (reports/<sweep>, exports/<sweep>/<trial>, the storage path's
    <sweep>); read from a tracking store or a flag, it must not climb out of it. Otherwise
    `error` (one line) names it as `what` (where it came from)."""
    problem = None
    if name in ("", ".", ".."):
        problem = "it names no folder of its own"
    elif "/" in name or "\\" in name:
        problem = "it holds a path separator"
    elif any(ord(character) < 32 or ord(character) == 127 for character in name):
        problem = "it holds a control character"
    elif len(name.encode("utf-8", "surrogateescape")) > _NAME_MAX_BYTES:
        problem = f"it is longer than {_NAME_MAX_BYTES} bytes"
    if problem is None:
        return name
    shown = repr(name) if len(name) <= 80 else repr(name[:77]) + "..."
    raise error(f"{what} {shown} is not a plain folder name ({problem}): refusing to use it")


def named_folder(
    parent: Path, name: str, what: str, error: type[TuckerSweepError] = ConfigError
) -> Path:
    """`parent`/`name`, `name` checked by plain_name: the one way a folder is named after a
    sweep or a trial."""
    return parent / plain_name(name, what, error)
