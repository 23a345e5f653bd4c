"""A folder of images, one subfolder per class (the ImageNet layout), on local disk or object
storage, decoded and augmented per item: for data sets that do not fit in memory.

    dm = ImageFolderDataModule("s3://bucket/pets", image_size=224)   # or a local folder
    dm.num_classes, dm.input_shape, dm.skipped_images    # known once built (the files listed)

Building it lists the root and decodes every image once (image_checks: remembered per node),
so that a bad file fails here, in one line naming it, or with `skip_bad_images=True` is left
out and listed in `skipped_images`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import ClassificationDataModule, check_fraction, split_sizes, stratified_split
from .errors import InvalidDatasetError, UnreadableImageError
from .image_checks import checked_bad_images
from .image_dataset import MODES, ImageFileDataset, image_channels, sample_statistics
from .image_files import ImageSource, list_images
from .image_transforms import DEFAULT_CROP_SCALE, EvalTransform, TrainTransform

# Normalisation statistics are measured on at most this many training images (seeded): a few
# hundred give the mean and std to about 1%, and every process that sets up reads them.
STATISTICS_SAMPLE = 256

Labelled = tuple[list[str], np.ndarray]  # relative paths and their labels, in path order


def _whole_number(name: str, value: object, choices: Sequence[int] | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidDatasetError(f"{name} must be a whole number of at least 1, got {value!r}")
    if choices is not None and value not in choices:
        raise InvalidDatasetError(
            f"{name} must be one of {', '.join(map(str, choices))}, got {value}"
        )
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _per_channel(name: str, value: object, channels: int) -> list[float]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) != channels or not all(map(_is_number, values)):
        raise InvalidDatasetError(
            f"{name} must be {channels} number(s), one per channel, got {value!r}"
        )
    return [float(v) for v in values]


def _crop_scale(value: object) -> tuple[float, float]:
    pair = list(value) if isinstance(value, (list, tuple)) else []
    if len(pair) != 2 or not all(map(_is_number, pair)) or not 0 < pair[0] <= pair[1] <= 1:
        raise InvalidDatasetError(
            f"crop_scale must be [low, high] area shares with 0 < low <= high <= 1, got {value!r}"
        )
    return float(pair[0]), float(pair[1])


class ImageFolderDataModule(ClassificationDataModule):
    """Class folders under `root` (a path, or a URI pyarrow opens: s3://, gs://) give the labels.

    Splits: the root's train/, val/ and test/ folders where it has them (a missing val/ or test/
    is carved from train/ with `val_fraction`, `test_fraction` of it), else all images split
    stratified with the seed. Training images get a random resized crop (`crop_scale`: its area
    share) and a horizontal flip, evaluation images a resize and a centre crop, both to
    `image_size` x `image_size`. `channels` (1 or 3; default: the first image's) decides the
    mode every image is converted to. `mean` and `std`, one per channel, default to those of a
    seeded sample of the training split.
    """

    name = "image_folder"
    in_memory = False  # Pillow decodes every item: DataLoader workers pay off

    def __init__(
        self,
        root: str | Path,
        *,
        image_size: int,
        seed: int = 0,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        num_workers: int | None = None,
        channels: int | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        crop_scale: Sequence[float] = DEFAULT_CROP_SCALE,
        skip_bad_images: bool = False,
    ) -> None:
        super().__init__(seed=seed, batch_size=batch_size, num_workers=num_workers)
        if not isinstance(root, (str, Path)) or not str(root):
            raise InvalidDatasetError(f"root must be a folder or a URI, got {root!r}")
        self.image_size = _whole_number("image_size", image_size)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise InvalidDatasetError(
                f"val_fraction + test_fraction must leave images to train on, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        self.crop_scale = _crop_scale(crop_scale)
        if not isinstance(skip_bad_images, bool):
            raise InvalidDatasetError(
                f"skip_bad_images must be true or false, got {skip_bad_images!r}"
            )
        if channels is not None:
            _whole_number("channels", channels, choices=tuple(MODES))
        self.source = ImageSource(str(root))
        self.root = self.source.root
        tree = list_images(self.source)
        self.classes = tree.classes
        bad = checked_bad_images(self.source, tree.files)
        if bad and not skip_bad_images:
            first = min(bad)
            more = f" (and {len(bad) - 1} more bad images)" if len(bad) > 1 else ""
            raise UnreadableImageError(
                f"cannot read image {self.source.shown(first)}: {bad[first]}{more}; fix or "
                "remove it, or set skip_bad_images to true to leave bad images out"
            )
        # Shown as a person finds them (root and path), sorted: logged as the list of what
        # the splits lack.
        self.skipped_images = [self.source.shown(path) for path in sorted(bad)]
        self._parts: dict[str, Labelled] = {
            part: ([file.path for file, _ in items if file.path not in bad],
                   np.array([label for file, label in items if file.path not in bad], np.int64))
            for part, items in tree.parts.items()
        }  # fmt: skip
        self._check_every_class_trains()
        self.num_classes = len(self.classes)
        first_path = self._training_part()[0][0]
        if channels is None:
            channels = image_channels(self.source, first_path)
        self.channels = _whole_number("channels", channels, choices=tuple(MODES))
        self.mode = MODES[self.channels]
        self.input_shape = (self.channels, self.image_size, self.image_size)
        self.given_mean = None if mean is None else _per_channel("mean", mean, self.channels)
        self.given_std = None if std is None else _per_channel("std", std, self.channels)
        if self.given_std is not None and min(self.given_std) <= 0:
            raise InvalidDatasetError(f"std must be above 0 for every channel, got {std!r}")

    @property
    def split_layout(self) -> bool:
        """Whether the root gives its splits as train/ (val/, test/) folders."""
        return "train" in self._parts

    def _training_part(self) -> Labelled:
        return self._parts["train" if self.split_layout else "all"]

    def _check_every_class_trains(self) -> None:
        _, labels = self._training_part()
        present = set(np.unique(labels).tolist())
        empty = [name for label, name in enumerate(self.classes) if label not in present]
        if empty:
            raise InvalidDatasetError(
                f"class folder(s) {', '.join(empty[:5])} under {self.source.shown_root} keep no "
                f"readable training images ({len(self.skipped_images)} bad images skipped)"
            )

    def _splits(self) -> dict[str, Labelled]:
        """Train, val and test: given folders as they are, the rest carved by seed (stratified
        by class) out of the training part; split_indices says which of its images went where."""
        paths, labels = self._training_part()
        given = {part: self._parts[part] for part in ("val", "test")
                 if len(self._parts.get(part, ((), ()))[0])}  # fmt: skip
        carved = [part for part in ("test", "val") if part not in given]
        fractions = {"val": self.val_fraction, "test": self.test_fraction}
        kept = np.arange(len(labels))
        indices = {}
        for part in carved:  # test first, then val from the rest: as the array data modules
            (size,) = split_sizes(len(labels), (fractions[part],))
            rest, held_out = stratified_split(labels[kept], size, self.seed)
            indices[part] = kept[held_out]
            kept = kept[rest]
        indices["train"] = kept
        self.split_indices = indices
        splits = {
            part: ([paths[i] for i in chosen], labels[chosen]) for part, chosen in indices.items()
        }
        return {**splits, **given}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return  # the splits do not depend on the stage; build them once
        splits = self._splits()
        evaluation = EvalTransform(self.image_size)
        self.mean, self.std = self._statistics(splits["train"][0], evaluation)
        views = {"train": TrainTransform(self.image_size, self.crop_scale)}
        datasets = {
            part: ImageFileDataset(
                self.source,
                paths,
                labels,
                mode=self.mode,
                transform=views.get(part, evaluation),
                mean=self.mean,
                std=self.std,
            )
            for part, (paths, labels) in splits.items()
        }
        self.train_set, self.val_set, self.test_set = (
            datasets["train"], datasets["val"], datasets["test"]
        )  # fmt: skip

    def _statistics(
        self, train_paths: list[str], evaluation: EvalTransform
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The given mean and std, or those of a seeded sample of the training split, as
        evaluation shows its images (the scale the network sees)."""
        if self.given_mean is not None and self.given_std is not None:
            return torch.tensor(self.given_mean), torch.tensor(self.given_std)
        rng = np.random.default_rng(self.seed)
        count = min(STATISTICS_SAMPLE, len(train_paths))
        sample = [
            train_paths[i] for i in np.sort(rng.choice(len(train_paths), count, replace=False))
        ]
        mean, std = sample_statistics(self.source, sample, self.mode, evaluation)
        if self.given_mean is not None:
            mean = torch.tensor(self.given_mean)
        if self.given_std is not None:
            std = torch.tensor(self.given_std)
        return mean, std
