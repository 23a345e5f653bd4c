"""A user's own images in an .npz file (arrays `x` and `y`) as a data module."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

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


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays (x, y) of an .npz file, with typed one-line errors for what is wrong with it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetUnavailableError(
            f"no .npz file at {path}; give the path of one saved with np.savez(path, x=..., y=...)"
        )
    _check_is_npz(path)
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
