"""A split of an image folder as a torch Dataset: each item read, decoded (Pillow), converted
to the data set's mode and transformed when asked for, in whichever process asks (DataLoader
workers, in the usual case); and the per-channel statistics of a sample of one."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .errors import UnreadableImageError, first_line
from .image_files import ImageSource, reader_threads
from .image_transforms import to_tensor

# Pillow modes read as one channel; every other mode (RGB, RGBA, P, CMYK, ...) as three.
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
MODES = {1: "L", 3: "RGB"}


def pillow_reason(error: Exception) -> str:
    """Why Pillow failed on a file, in a few words."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image file Pillow can read"  # its own text shows a BytesIO's repr
    return f"{type(error).__name__}: {first_line(error)}"


def load_image(source: ImageSource, path: str, mode: str | None) -> Image.Image:
    """The decoded image at `path` under the root, in `mode` (None: its own); an
    UnreadableImageError names the file."""
    try:
        data = source.read(path)
    except OSError as err:
        raise UnreadableImageError(
            f"cannot read image {source.shown(path)}: {first_line(err)}"
        ) from err
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert(mode or image.mode)  # decodes; a copy that outlives the file
    except Exception as err:  # a decoder meets untrusted bytes: whatever it raises, name the file
        raise UnreadableImageError(
            f"cannot decode image {source.shown(path)}: {pillow_reason(err)}"
        ) from err


def image_channels(source: ImageSource, path: str) -> int:
    """1 for a grayscale image file, 3 for colour: how many channels the data set has."""
    mode = load_image(source, path, mode=None).mode
    return 1 if mode in GRAY_MODES else 3


class ImageFileDataset(Dataset):
    """(normalised C x H x W float32 image, int label) per file. Picklable (the source keeps
    only its root), so workers started by spawn get it too."""

    def __init__(
        self,
        source: ImageSource,
        paths: Sequence[str],
        labels: np.ndarray,
        *,
        mode: str,
        transform: Callable[[Image.Image], Image.Image],
        mean: torch.Tensor,
        std: torch.Tensor,
    ) -> None:
        self.source = source
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mode = mode
        self.transform = transform
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.source, self.paths[index], self.mode)
        return to_tensor(self.transform(image), self.mean, self.std), int(self.labels[index])


def sample_statistics(
    source: ImageSource,
    paths: Sequence[str],
    mode: str,
    transform: Callable[[Image.Image], Image.Image],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std, on the [0, 1] scale, of the pixels of `paths` as `transform`
    shows them. Summed per image in float64, in the order of `paths`: the same sample gives the
    same figures whatever the threads' timing."""
    channels = 1 if mode == "L" else 3
    unit = (torch.zeros(channels), torch.ones(channels))

    def sums(path: str) -> tuple[np.ndarray, np.ndarray, int]:
        pixels = to_tensor(transform(load_image(source, path, mode)), *unit).double()
        flat = pixels.reshape(channels, -1)
        return flat.sum(1).numpy(), (flat * flat).sum(1).numpy(), flat.shape[1]

    with ThreadPoolExecutor(max_workers=reader_threads(source.root)) as pool:
        per_image = list(pool.map(sums, paths))
    count = sum(n for _, _, n in per_image)
    mean = sum(total for total, _, _ in per_image) / count
    variance = np.maximum(sum(squares for _, squares, _ in per_image) / count - mean * mean, 0.0)
    std = np.sqrt(variance)
    # A constant channel would divide by zero; leaving it unscaled is harmless.
    std = np.where(std > 1e-6, std, 1.0)
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()
