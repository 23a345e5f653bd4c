"""A sweep's own files beside Ray Tune's experiment directory, on any storage Ray supports.

    <storage_path>/<sweep name>/               Ray Tune's experiment (trials, checkpoints)
    <storage_path>/<sweep name>/tucker_sweep/  config.yaml, seed.json, spectra.png, baseline.pt

pyarrow's filesystems (what Ray itself uses for `storage_path`) make the same code work for a
local folder, NFS, and s3:// or gs:// URIs shared by a cluster.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow.fs as pafs
import torch

SWEEP_FOLDER = "tucker_sweep"


def is_remote(path: str) -> bool:
    """s3://, gs://, ...: storage that other machines (and accounts) may share."""
    return "://" in path and not path.startswith("file://")


def absolute_storage_path(storage_path: str) -> str:
    """Ray wants an absolute path or a URI."""
    if "://" in storage_path:
        return storage_path
    return str(Path(os.path.expanduser(storage_path)).resolve())


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of an absolute path or URI, and the path within it."""
    return pafs.FileSystem.from_uri(path if "://" in path else "file://" + path)


class SweepStore:
    """Files of one sweep."""

    def __init__(self, storage_path: str, name: str) -> None:
        self.storage_path = absolute_storage_path(storage_path)
        self.name = name
        self.experiment_path = f"{self.storage_path.rstrip('/')}/{name}"
        self._fs, root = filesystem(self.experiment_path)
        self._folder = f"{root}/{SWEEP_FOLDER}"

    def _path(self, filename: str) -> str:
        return f"{self._folder}/{filename}"

    def exists(self, filename: str | None = None) -> bool:
        path = self._folder if filename is None else self._path(filename)
        return self._fs.get_file_info(path).type != pafs.FileType.NotFound

    def write_bytes(self, filename: str, data: bytes) -> None:
        self._fs.create_dir(self._folder, recursive=True)
        with self._fs.open_output_stream(self._path(filename)) as stream:
            stream.write(data)

    def read_bytes(self, filename: str) -> bytes:
        with self._fs.open_input_stream(self._path(filename)) as stream:
            return stream.read()

    def write_text(self, filename: str, text: str) -> None:
        self.write_bytes(filename, text.encode())

    def read_text(self, filename: str) -> str:
        return self.read_bytes(filename).decode()

    def save_tensors(self, filename: str, tensors: dict[str, torch.Tensor]) -> None:
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        self.write_bytes(filename, buffer.getvalue())

    def load_tensors(self, filename: str) -> dict[str, torch.Tensor]:
        return torch.load(io.BytesIO(self.read_bytes(filename)), weights_only=True)

    def copy_to(self, filename: str, destination: Path) -> Path:
        destination.write_bytes(self.read_bytes(filename))
        return destination
