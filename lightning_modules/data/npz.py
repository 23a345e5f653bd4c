"""A user's own images in an .npz file (arrays `x` and `y`) as a data module."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import psutil

from .errors import DatasetUnavailableError, InvalidDatasetError
from .tensor_sets import ArrayDataModule

# How an .npz (a zip archive) and an .npy file begin. np.load takes any other file for a
# pickle, and would call a text file "pickled data".
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def _check_is_npz(path: Path) -> None:
    try:
        with path.open("rb") as file:
            head = file.read(6)
    except OSError as err:
        raise InvalidDatasetError(f"cannot read {path}: {err.strerror or err}") from err
    if head.startswith(_NPY_MAGIC) or head.startswith(_ZIP_MAGIC):
        return  # np.load tells a single array from an archive
    raise InvalidDatasetError(
        f"cannot read {path}: it is not an .npz archive (save one with "
        "np.savez(path, x=images, y=labels))"
    )


def _declared_sizes(path: Path) -> dict[str, tuple[str, int, int]]:
    """What the headers of x.npy and y.npy in the archive declare: (shape and dtype as text,
    bytes the array needs, bytes stored after the header), read without loading the arrays.
    Empty where the archive is unreadable or lacks them: load_npz's own checks say so."""
    declared = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for key in ("x", "y"):
                info = archive.getinfo(f"{key}.npy")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(member)
                    needed = math.prod(shape) * dtype.itemsize
                    declared[key] = (f"{shape} of {dtype}", needed, info.file_size - member.tell())
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return {}
    return declared


def _check_declared_sizes(path: Path) -> None:
    """An array header can declare any shape, and np.load allocates what it declares before
    reading a byte: a corrupt or crafted file would ask for petabytes (a MemoryError, or the
    process killed where memory is overcommitted)."""
    declared = _declared_sizes(path)
    for key, (what, needed, stored) in declared.items():
        if needed > stored:
            raise InvalidDatasetError(
                f"{path}: array {key} declares shape {what} ({_size(needed)}) but holds "
                f"{_size(stored)}: the file is truncated or corrupt"
            )
    needed = sum(size for _, size, _ in declared.values())
    available = psutil.virtual_memory().available
    if needed > available:
        raise InvalidDatasetError(
            f"{path}: arrays x and y need {_size(needed)} of memory, and this host has "
            f"{_size(available)} available"
        )


def _size(count: int) -> str:
    return f"{count:,} bytes" if count < 2**30 else f"{count / 2**30:,.1f} GiB"


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays (x, y) of an .npz file, with typed one-line errors for what is wrong with it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetUnavailableError(
            f"no .npz file at {path}; give the path of one saved with np.savez(path, x=..., y=...)"
        )
    _check_is_npz(path)
    _check_declared_sizes(path)
    try:
        # allow_pickle=False: reading a data file must never run code from it.
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InvalidDatasetError(f"cannot read {path} as an .npz file ({err})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InvalidDatasetError(
            f"{path} holds a single array, not an .npz; "
            "save it with np.savez(path, x=images, y=labels)"
        )
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise InvalidDatasetError(
                f"{path} lacks array(s) {', '.join(missing)} (it holds "
                f"{', '.join(archive.files) or 'nothing'}); save it with "
                "np.savez(path, x=images, y=labels)"
            )
        try:
            return archive["x"], archive["y"]
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise InvalidDatasetError(f"cannot read arrays x and y from {path} ({err})") from err


class NpzDataModule(ArrayDataModule):
    """Images `x` and integer labels `y` from an .npz file, split stratified with a seed."""

    def __init__(
        self,
        path: str | Path,
        *,
        seed: int = 0,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        num_workers: int | None = None,
        channels_last: bool | None = None,
    ) -> None:
        x, y = load_npz(path)
        super().__init__(
            x,
            y,
            name="npz",
            seed=seed,
            batch_size=batch_size,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            num_workers=num_workers,
            channels_last=channels_last,
        )
        self.path = Path(path).expanduser()
