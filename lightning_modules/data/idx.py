"""Reading IDX files, the format of MNIST and Fashion-MNIST, into numpy arrays."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .errors import InvalidDatasetError

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzipped when its name ends in .gz)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise InvalidDatasetError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int(n) for n in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_end != expected:
        raise InvalidDatasetError(
            f"{path} is truncated or corrupt: its header says {shape} but it holds "
            f"{len(data) - header_end} bytes of data"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    # Native byte order (and a writable copy) for numpy and torch arithmetic.
    return values.astype(dtype.newbyteorder("="))
