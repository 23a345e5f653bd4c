"""The image folder's transforms, PIL image in, normalised C x H x W float32 tensor out.

torchvision.transforms (RandomResizedCrop, RandomHorizontalFlip, Resize + CenterCrop) is the
library these follow, and would be the one to use; it cannot be a hard dependency here: its
wheels are built against one torch each, and where they do not match (the CPU torch of this
project's machines beside PyPI's CUDA torchvision) it fails at import. Written with PIL and torch
instead, with torchvision's sampling and defaults.

Random draws come from torch's global generator unless one is given: in a DataLoader worker
that generator is seeded by the loader (its seeded generator, plus the worker's id), so the
augmentation of each worker repeats run after run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

# torchvision's ImageNet evaluation: resize to image_size / 0.875 (256 for 224), then crop the
# centre, so that evaluation sees objects at about the scale training crops show them.
EVAL_CROP_FRACTION = 0.875
# RandomResizedCrop's defaults: the crop's share of the image's area, and its aspect ratio.
DEFAULT_CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
_RESAMPLE = Image.Resampling.BILINEAR


def to_tensor(image: Image.Image, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A PIL image (L or RGB) as a C x H x W float32 tensor on [0, 1], then normalised."""
    array = np.array(image, dtype=np.float32) / 255.0  # a copy: torch needs it writable
    tensor = torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    return (tensor - mean[:, None, None]) / std[:, None, None]


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return float(torch.empty(()).uniform_(low, high, generator=generator))


def _below(count: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, count, (), generator=generator))


def crop_box(
    width: int,
    height: int,
    scale: Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, right, bottom): an area share in `scale` and an
    aspect ratio in 3/4..4/3 (log-uniform), up to 10 tries, else the centre at a ratio in range."""
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(*log_ratio, generator))
        crop_width = round(math.sqrt(target * aspect))
        crop_height = round(math.sqrt(target / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            left = _below(width - crop_width + 1, generator)
            top = _below(height - crop_height + 1, generator)
            return left, top, left + crop_width, top + crop_height
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        crop_width, crop_height = width, round(width / CROP_RATIO[0])
    elif ratio > CROP_RATIO[1]:
        crop_width, crop_height = round(height * CROP_RATIO[1]), height
    else:
        crop_width, crop_height = width, height
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


class TrainTransform:
    """Random resized crop to image_size x image_size, a horizontal flip half the time."""

    def __init__(self, image_size: int, scale: Sequence[float] = DEFAULT_CROP_SCALE) -> None:
        self.image_size = image_size
        self.scale = (float(scale[0]), float(scale[1]))

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> Image.Image:
        box = crop_box(*image.size, self.scale, generator)
        # One resize of the box: crop and scale in a single resampling pass.
        cropped = image.resize((self.image_size, self.image_size), _RESAMPLE, box=box)
        if _uniform(0.0, 1.0, generator) < 0.5:
            return cropped.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return cropped


class EvalTransform:
    """The shorter side resized to image_size / 0.875, the centre image_size x image_size."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        resized_short_side = round(self.image_size / EVAL_CROP_FRACTION)
        # The centre square, in the source's pixels, that ends up image_size wide.
        side = self.image_size * min(width, height) / resized_short_side
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
        return image.resize((self.image_size, self.image_size), _RESAMPLE, box=box)
