"""MNIST and Fashion-MNIST: IDX files from a local folder, downloaded by torchvision if absent.

The IDX files are read here rather than through torchvision.datasets.MNIST: the
whole set fits in memory as one tensor (faster than PIL images one by one, no
workers needed), and a folder that already holds the files then works on machines
where torchvision cannot be installed. torchvision only downloads them.

A folder holding only the test half (t10k-*, e.g. a benchmark's real-data
sample) cannot back this module, which needs the official train half; use
`ArrayDataModule(*read_mnist_idx(folder, "test"), name="mnist-t10k")` for those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .arrays import images_to_nchw
from .base import split_sizes, stratified_split
from .downloadable import DownloadableDataModule
from .errors import DatasetUnavailableError, first_line
from .idx import read_idx
from .tensor_sets import Splits, TensorDataModule
from .vision import DATA_DIR_ENV, import_torchvision

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_mnist_idx(
    folder: str | Path | list[Path], split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of the "train" or "test" half in `folder`.

    The files may be gzipped (.gz) or not; `folder` may be a list searched in order.
    """
    folders = [Path(f) for f in folder] if isinstance(folder, list) else [Path(folder)]
    paths = [_find(folders, stem) for stem in MNIST_FILES[split]]
    if None in paths:
        missing = [stem for stem, p in zip(MNIST_FILES[split], paths, strict=True) if p is None]
        raise DatasetUnavailableError(
            f"missing {', '.join(f'{m}.gz' for m in missing)} in {', '.join(map(str, folders))}"
        )
    images_path, labels_path = paths
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetUnavailableError(
            f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) do not "
            "form an MNIST-format split; replace them with the original files"
        )
    return images, labels


class MNISTDataModule(DownloadableDataModule, TensorDataModule):
    """MNIST: val carved from the official 60,000 train images by seed; test = official 10,000.

    Files are looked for in `<data_dir>/MNIST/raw/` (torchvision's layout) and in
    `<data_dir>/` itself; `data_dir` defaults to $TUCKER_SWEEP_DATA or
    ~/.cache/tucker-sweep/data. When they are absent, `prepare_data()` downloads
    them with torchvision (`download=True`), else a DatasetUnavailableError says
    where to put them. With several processes on one cache (Ray trials), call
    `prepare_data()` once before they start.
    """

    name = "mnist"
    num_classes = 10
    input_shape = (1, 28, 28)
    # The torchvision dataset class: it downloads into <data_dir>/<class name>/raw.
    torchvision_class = "MNIST"

    def check_available(self) -> None:
        if not self._files_present():
            if not self.download:
                raise self._unavailable("download=False")
            import_torchvision(alternative=f"or {self._where_to_put()}")

    @property
    def raw_folder(self) -> Path:
        return self.data_dir / self.torchvision_class / "raw"

    def _folders(self) -> list[Path]:
        return [self.raw_folder, self.data_dir]

    def _files_present(self) -> bool:
        stems = MNIST_FILES["train"] + MNIST_FILES["test"]
        return all(_find(self._folders(), stem) for stem in stems)

    def _where_to_put(self) -> str:
        files = ", ".join(f"{stem}.gz" for stem in MNIST_FILES["train"] + MNIST_FILES["test"])
        return (
            f"put {files} into {self.raw_folder} (or point data_dir or ${DATA_DIR_ENV} "
            "at a folder holding them)"
        )

    def _unavailable(self, reason: str) -> DatasetUnavailableError:
        return DatasetUnavailableError(
            f"{self.name} is not in {self.data_dir} and was not downloaded ({reason}); "
            + self._where_to_put()
        )

    def prepare_data(self) -> None:
        if self._files_present():
            return
        if not self.download:
            raise self._unavailable("download=False")
        torchvision = import_torchvision(alternative=f"or {self._where_to_put()}")
        dataset_class = getattr(torchvision.datasets, self.torchvision_class)
        try:
            # download() fetches both halves whichever `train` is asked for.
            dataset_class(root=str(self.data_dir), train=True, download=True)
        except (OSError, RuntimeError, ValueError) as err:
            raise self._unavailable(f"download failed: {first_line(err)}") from err

    def load_splits(self) -> Splits:
        if not self._files_present():
            raise self._unavailable("call prepare_data() first to download it")
        x_official, y_official = read_mnist_idx(self._folders(), "train")
        x_test, y_test = read_mnist_idx(self._folders(), "test")
        (n_val,) = split_sizes(len(y_official), (self.val_fraction,))
        train, val = stratified_split(y_official, n_val, self.seed)
        self.split_indices = {"train": train, "val": val}
        y_official, y_test = y_official.astype(np.int64), y_test.astype(np.int64)
        return Splits(
            images_to_nchw(x_official[train]),
            y_official[train],
            images_to_nchw(x_official[val]),
            y_official[val],
            images_to_nchw(x_test),
            y_test,
        )


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando): same format, sizes and splits as MNIST; folder FashionMNIST/raw."""

    name = "fashion_mnist"
    torchvision_class = "FashionMNIST"
