"""Checking user arrays and turning them into N x C x H x W float32 images and int64 labels."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .errors import DatasetWarning, InvalidDatasetError

# Above this many channels an axis is taken for a spatial one when guessing the layout.
_MAX_GUESSED_CHANNELS = 4
# Class indices above this are not classes: the head, the loss and the metrics hold a value per
# class, and a label of 10**12 once asked for terabytes (the process was killed). ImageNet-21k
# has 21,841 classes.
MAX_CLASSES = 100_000


def images_to_nchw(x: np.ndarray, channels_last: bool | None = None) -> np.ndarray:
    """Images (N,C,H,W), (N,H,W,C) or grayscale (N,H,W) as float32 N x C x H x W.

    uint8 images are scaled to [0, 1]; float images are kept as they are. With
    `channels_last=None` the layout is guessed from which axis is small (at most 4).
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        images = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        images = x.astype(np.float32, copy=False)
        check_finite(images)
    else:
        raise InvalidDatasetError(
            f"images x must be uint8 (0..255) or float, got dtype {x.dtype}; convert them first"
        )
    if images.ndim == 3:
        return images[:, None, :, :]
    if images.ndim != 4:
        raise InvalidDatasetError(
            f"images x must be (N,C,H,W), (N,H,W,C) or (N,H,W); got shape {x.shape}"
        )
    if channels_last is None:
        channels_last = _guess_channels_last(x.shape)
    return np.moveaxis(images, -1, 1) if channels_last else images


def check_finite(images: np.ndarray) -> None:
    """NaN or inf in the images would only show up as a diverged loss mid-training."""
    # A float64 sum is NaN or inf exactly when some value is (finite float32 values cannot
    # overflow it), and needs no N-sized mask in the common, clean case.
    if math.isfinite(images.sum(dtype=np.float64)):
        return
    bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    raise InvalidDatasetError(
        f"images x hold NaN or infinite values in {int(bad.sum())} of {len(images)} images "
        f"(the first is image {int(np.argmax(bad))}); drop or fix them first"
    )


def class_count(labels: np.ndarray) -> int:
    """The number of classes a head needs for class indices `labels` (the largest + 1),
    checked that there is something to train; labels that skip classes get a warning."""
    if len(labels) < 3:
        raise InvalidDatasetError(
            f"the data set holds {len(labels)} example(s): a train, a validation and a test "
            "split need at least 3"
        )
    present = np.unique(labels)
    if len(present) < 2:
        raise InvalidDatasetError(
            f"labels y hold a single class ({int(present[0])}): a classifier needs at least 2"
        )
    count = int(present[-1]) + 1
    if count > MAX_CLASSES:
        raise InvalidDatasetError(
            f"labels y go up to {count - 1:,}: class indices must be below {MAX_CLASSES:,}; "
            f"map the labels to 0..{len(present) - 1}"
        )
    if len(present) < count:
        missing = sorted(set(range(count)) - {int(label) for label in present})
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        warnings.warn(
            f"labels y use {len(present)} of the classes 0..{count - 1} (no examples of "
            f"{shown}): the classifier gets {count} outputs; map the labels to "
            f"0..{len(present) - 1} to avoid empty classes",
            DatasetWarning,
            stacklevel=2,
        )
    return count


def _guess_channels_last(shape: tuple[int, ...]) -> bool:
    first_small = shape[1] <= _MAX_GUESSED_CHANNELS
    last_small = shape[-1] <= _MAX_GUESSED_CHANNELS
    if first_small != last_small:
        return last_small
    raise InvalidDatasetError(
        f"cannot tell where the channel axis of images with shape {shape} is; "
        "pass channels_last=True for (N,H,W,C) or channels_last=False for (N,C,H,W)"
    )


def class_labels(y: np.ndarray, num_images: int) -> np.ndarray:
    """Labels as an int64 vector of class indices 0..K-1, one per image."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InvalidDatasetError(
            f"labels y must be a vector of class indices, got shape {y.shape}"
            + (" (one-hot? use y.argmax(axis=1))" if y.ndim == 2 else "")
        )
    if len(y) != num_images:
        raise InvalidDatasetError(
            f"x holds {num_images} images but y holds {len(y)} labels; they must match"
        )
    if np.issubdtype(y.dtype, np.integer):
        labels = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y) & (y == np.round(y))):
        # Labels saved as 0.0, 1.0, ... are common (e.g. from pandas); the values decide.
        labels = y.astype(np.int64)
    else:
        example = next((v for v in y.ravel() if not _is_whole_number(v)), y.ravel()[:1])
        raise InvalidDatasetError(
            f"labels y must be integer class indices 0..K-1, got dtype {y.dtype} "
            f"(e.g. {example!r}); map them to integers first"
        )
    if len(labels) and labels.min() < 0:
        raise InvalidDatasetError(
            f"labels y must be class indices 0..K-1, got a negative label {labels.min()}"
        )
    return labels


def _is_whole_number(value: object) -> bool:
    try:
        return float(value) == round(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
