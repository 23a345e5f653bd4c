"""Data modules on real data: scikit-learn's digits, .npz and IDX files written here. No network."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lightning_modules.data import (
    DATASET_NAMES,
    ArrayDataModule,
    CIFAR10DataModule,
    DatasetUnavailableError,
    DigitsDataModule,
    InvalidDatasetError,
    MNISTDataModule,
    NpzDataModule,
    TorchvisionUnavailableError,
    UnknownDatasetError,
    make_datamodule,
    read_idx,
    read_mnist_idx,
)
from lightning_modules.data.device_batches import DeviceBatches
from lightning_modules.module import TuckerClassifier
from lightning_modules.trainer import make_trainer

DIGITS = load_digits()


def _torchvision_importable() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # ImportError, or a build that does not load beside this torch
        return False
    return True


TORCHVISION = _torchvision_importable()


def _first_batch(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(datamodule.train_dataloader()))


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- digits -----------------------------------------------------------------------------


def test_digits_interface_is_known_before_setup():
    datamodule = make_datamodule("digits")
    assert isinstance(datamodule, DigitsDataModule)
    assert datamodule.name == "digits"
    assert datamodule.num_classes == 10
    assert datamodule.input_shape == (1, 8, 8)
    assert datamodule.train_set is None  # nothing split yet


def test_digits_splits_are_disjoint_stratified_and_sized_by_fraction():
    datamodule = DigitsDataModule(seed=0, val_fraction=0.2, test_fraction=0.1)
    datamodule.setup("fit")
    split = datamodule.split_indices
    assert {name: len(indices) for name, indices in split.items()} == {
        "train": 1258,
        "val": 359,
        "test": 180,
    }
    assert np.array_equal(np.sort(np.concatenate(list(split.values()))), np.arange(1797))
    overall = np.bincount(DIGITS.target, minlength=10) / 1797
    for name, indices in split.items():
        proportions = np.bincount(DIGITS.target[indices], minlength=10) / len(indices)
        # Stratified: every class within one example of its overall share.
        assert np.all(np.abs(proportions - overall) <= 1.0 / len(indices) + 1e-9), name
    assert len(datamodule.train_set) == 1258
    assert len(datamodule.val_set) == 359
    assert len(datamodule.test_set) == 180


def test_digits_batches_are_float_images_and_int64_labels():
    datamodule = DigitsDataModule(batch_size=32)
    for loader in (
        datamodule.train_dataloader(),
        datamodule.val_dataloader(),
        datamodule.test_dataloader(),
    ):
        images, labels = next(iter(loader))
        assert images.shape == (32, 1, 8, 8) and images.dtype == torch.float32
        assert labels.shape == (32,) and labels.dtype == torch.int64
        assert int(labels.min()) >= 0 and int(labels.max()) < 10


def test_digits_normalised_with_statistics_of_the_train_split_only():
    datamodule = DigitsDataModule(seed=5)
    datamodule.setup()
    split = datamodule.split_indices
    raw = DIGITS.images.astype(np.float64)
    assert datamodule.mean.item() == pytest.approx(raw[split["train"]].mean(), rel=1e-5)
    assert datamodule.std.item() == pytest.approx(raw[split["train"]].std(), rel=1e-5)
    # Statistics of all the data (leaking val and test) would differ.
    assert datamodule.mean.item() != pytest.approx(raw.mean(), rel=1e-5)

    train_images = datamodule.train_set.tensors[0]
    assert train_images.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train_images.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    val_images, val_labels = datamodule.val_tensors()
    restored = val_images[:, 0].double() * datamodule.std.item() + datamodule.mean.item()
    assert np.allclose(restored.numpy(), raw[split["val"]], atol=1e-4)
    assert np.array_equal(val_labels.numpy(), DIGITS.target[split["val"]])


def test_same_seed_gives_same_split_and_first_batch_other_seed_differs():
    first, again, other = (DigitsDataModule(seed=s) for s in (7, 7, 8))
    for datamodule in (first, again, other):
        datamodule.setup("fit")
    for name in ("train", "val", "test"):
        assert np.array_equal(first.split_indices[name], again.split_indices[name])
    assert not np.array_equal(first.split_indices["val"], other.split_indices["val"])

    x_first, y_first = _first_batch(first)
    x_again, y_again = _first_batch(again)
    assert torch.equal(x_first, x_again) and torch.equal(y_first, y_again)
    x_other, _ = _first_batch(other)
    assert not torch.equal(x_first, x_other)


def test_train_order_repeats_per_loader_and_changes_between_epochs():
    datamodule = DigitsDataModule(seed=1)
    assert torch.equal(_first_batch(datamodule)[1], _first_batch(datamodule)[1])
    loader = datamodule.train_dataloader()
    epoch_one = torch.cat([labels for _, labels in loader])
    epoch_two = torch.cat([labels for _, labels in loader])
    assert not torch.equal(epoch_one, epoch_two)
    assert torch.equal(epoch_one.sort().values, epoch_two.sort().values)
    # val and test are never shuffled.
    assert torch.equal(
        torch.cat([y for _, y in datamodule.val_dataloader()]), datamodule.val_tensors()[1]
    )


def test_loader_settings_follow_workers_and_cuda():
    in_memory = DigitsDataModule().train_dataloader()
    assert in_memory.num_workers == 0
    assert in_memory.persistent_workers is False
    assert in_memory.pin_memory == torch.cuda.is_available()
    with_workers = DigitsDataModule(num_workers=1).val_dataloader()
    assert with_workers.num_workers == 1 and with_workers.persistent_workers is True


def test_lightning_trainer_runs_on_the_datamodule():
    class Linear(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(64, 10)

        def training_step(self, batch, _):
            images, labels = batch
            return torch.nn.functional.cross_entropy(self.layer(images.flatten(1)), labels)

        def validation_step(self, batch, _):
            images, labels = batch
            loss = torch.nn.functional.cross_entropy(self.layer(images.flatten(1)), labels)
            self.log("val_loss", loss)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Linear(), datamodule=DigitsDataModule(seed=0))
    assert trainer.callback_metrics["val_loss"] < 2.3  # better than chance (ln 10) after an epoch


def test_device_batches_are_seeded_permutations_of_the_split():
    def device_batches(seed: int) -> DeviceBatches:
        datamodule = DigitsDataModule(seed=seed, batch_size=50)
        datamodule.batch_on_device = True
        batches = datamodule.train_dataloader()
        assert isinstance(batches, DeviceBatches)
        return batches

    batches = device_batches(3)
    first, second = list(batches), list(batches)  # two epochs
    assert len(first) == len(batches) == math.ceil(len(batches.labels) / 50)
    split = batches.images
    for epoch in (first, second):  # every example exactly once per epoch
        images = torch.cat([x for x, _ in epoch])
        assert images.shape == split.shape
        torch.testing.assert_close(images.sum(0), split.sum(0), atol=1e-3, rtol=1e-5)
    assert not torch.equal(first[0][1], second[0][1])  # a new order each epoch
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, device_batches(3), strict=True))
    assert not torch.equal(first[0][1], next(iter(device_batches(4)))[1])
    datamodule = DigitsDataModule(seed=3)
    datamodule.batch_on_device = True
    _, val_labels = datamodule.val_tensors()  # in order: slices of the split
    assert torch.equal(val_labels, datamodule.val_set.tensors[1])


def test_lightning_fits_on_device_batches():
    classifier = TuckerClassifier(model_name="vgg_small", max_epochs=2, lr=0.05)
    datamodule = DigitsDataModule(seed=0, batch_size=64)
    datamodule.batch_on_device = True
    trainer = make_trainer(2)
    trainer.fit(classifier, datamodule=datamodule)
    assert isinstance(trainer.train_dataloader, DeviceBatches)
    assert trainer.num_training_batches == len(trainer.train_dataloader)
    assert trainer.callback_metrics["val_acc"] > 0.5  # it learns (chance: 0.1)


# --- options and names ------------------------------------------------------------------


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(UnknownDatasetError) as error:
        make_datamodule("imagenet")
    message = _one_line(error)
    assert "imagenet" in message
    assert all(name in message for name in DATASET_NAMES)


def test_option_errors_are_typed():
    with pytest.raises(InvalidDatasetError, match="test_fraction"):
        make_datamodule("mnist", test_fraction=0.2, download=False)
    with pytest.raises(InvalidDatasetError, match="path"):
        make_datamodule("npz")
    with pytest.raises(InvalidDatasetError, match="val_fraction"):
        make_datamodule("digits", val_fraction=0.0)
    with pytest.raises(InvalidDatasetError, match="leave examples"):
        make_datamodule("digits", val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(InvalidDatasetError, match="batch_size"):
        make_datamodule("digits", batch_size=0)
    # None means "not given": one config can carry options a dataset does not take.
    assert make_datamodule("Digits", test_fraction=None, data_dir=None).name == "digits"


def test_a_class_too_small_to_stratify_is_a_typed_error():
    labels = np.array([0] * 20 + [1] * 20 + [2])
    datamodule = ArrayDataModule(np.zeros((41, 4, 4), np.float32), labels)
    with pytest.raises(InvalidDatasetError, match="stratified"):
        datamodule.setup()


# --- npz --------------------------------------------------------------------------------


def _digits_rgb_uint8() -> np.ndarray:
    """Digits as uint8 (N, 3, 8, 8): three differently scaled copies of each image."""
    gray = DIGITS.images / 16.0
    return (np.stack([gray, gray**2, 1.0 - gray], axis=1) * 255).round().astype(np.uint8)


def _save(tmp_path: Path, name: str, **arrays: np.ndarray) -> Path:
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("layout", "to_layout"),
    [
        ("channels_first", lambda x: x),
        ("channels_last", lambda x: np.moveaxis(x, 1, -1)),
        ("channels_first_float", lambda x: x.astype(np.float32) / 255.0),
        ("channels_last_float", lambda x: np.moveaxis(x, 1, -1).astype(np.float64) / 255.0),
    ],
)
def test_npz_colour_layouts_and_dtypes_give_the_same_data(tmp_path, layout, to_layout):
    images = _digits_rgb_uint8()
    reference = ArrayDataModule(images, DIGITS.target, seed=2)
    path = _save(tmp_path, layout, x=to_layout(images), y=DIGITS.target)
    datamodule = make_datamodule("npz", path=path, seed=2)
    assert isinstance(datamodule, NpzDataModule)
    assert datamodule.name == "npz"
    assert (datamodule.num_classes, datamodule.input_shape) == (10, (3, 8, 8))
    x, y = datamodule.val_tensors()
    x_reference, y_reference = reference.val_tensors()
    assert torch.equal(y, y_reference)
    assert torch.allclose(x, x_reference, atol=1e-5)
    train_images = images[reference.split_indices["train"]] / 255.0
    assert np.allclose(datamodule.mean.numpy(), train_images.mean(axis=(0, 2, 3)), atol=1e-5)


def test_npz_grayscale_uint8_and_float_labels(tmp_path):
    gray = (DIGITS.images * 255 / 16).round().astype(np.uint8)
    with_channel = ArrayDataModule(gray[:, None], DIGITS.target)
    path = _save(tmp_path, "gray", x=gray, y=DIGITS.target.astype(np.float32))
    datamodule = NpzDataModule(path)
    assert datamodule.input_shape == (1, 8, 8)
    x, y = datamodule.val_tensors()
    assert y.dtype == torch.int64
    assert torch.equal(x, with_channel.val_tensors()[0])
    assert float(datamodule.images.max()) == pytest.approx(1.0)  # uint8 scaled to [0, 1]


def test_npz_missing_file(tmp_path):
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(DatasetUnavailableError) as error:
        make_datamodule("npz", path=missing)
    assert str(missing) in _one_line(error)


def test_npz_wrong_keys(tmp_path):
    path = _save(tmp_path, "keys", images=np.zeros((4, 8, 8)), y=np.arange(4))
    with pytest.raises(InvalidDatasetError) as error:
        NpzDataModule(path)
    message = _one_line(error)
    assert "lacks array(s) x" in message and "images" in message


def test_npz_mismatched_lengths(tmp_path):
    path = _save(tmp_path, "lengths", x=np.zeros((10, 8, 8)), y=np.arange(9))
    with pytest.raises(InvalidDatasetError) as error:
        NpzDataModule(path)
    assert "10 images" in _one_line(error) and "9 labels" in str(error.value)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0.0, 1.5, 2.0, 1.0]),
        np.array(["cat", "dog", "cat", "dog"]),
        np.array([0, 1, -1, 1]),
    ],
)
def test_npz_non_integer_labels(tmp_path, labels):
    path = _save(tmp_path, "labels", x=np.zeros((4, 8, 8), np.float32), y=labels)
    with pytest.raises(InvalidDatasetError) as error:
        NpzDataModule(path)
    assert "class indices" in _one_line(error)


def test_npz_that_is_not_an_npz(tmp_path):
    path = tmp_path / "single.npz"
    np.save(path.with_suffix(""), np.zeros(3))  # writes single.npy
    path.with_suffix(".npy").rename(path)
    with pytest.raises(InvalidDatasetError, match="single array"):
        NpzDataModule(path)
    path.write_text("not a numpy file")
    with pytest.raises(InvalidDatasetError, match="cannot read"):
        NpzDataModule(path)


def test_ambiguous_layout_asks_for_channels_last():
    images = np.zeros((40, 3, 4, 4), np.float32)
    labels = np.arange(40) % 2
    with pytest.raises(InvalidDatasetError, match="channels_last"):
        ArrayDataModule(images, labels)
    assert ArrayDataModule(images, labels, channels_last=True).input_shape == (4, 3, 4)
    assert ArrayDataModule(images, labels, channels_last=False).input_shape == (3, 4, 4)


# --- MNIST-format IDX files -------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def _digits_as_mnist(count: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits blown up to 28x28 uint8 (3x3 pixels each, 2-pixel border), like MNIST."""
    chosen = slice(start, start + count)
    big = np.kron(DIGITS.images[chosen] * 255 / 16, np.ones((3, 3)))
    images = np.pad(big, ((0, 0), (2, 2), (2, 2))).round().astype(np.uint8)
    return images, DIGITS.target[chosen].astype(np.uint8)


@pytest.mark.parametrize("layout", ["torchvision", "flat"])
def test_mnist_reads_local_idx_files_without_torchvision(tmp_path, layout):
    folder = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if layout == "torchvision" else ""
    train_x, train_y = _digits_as_mnist(600, 0)
    test_x, test_y = _digits_as_mnist(200, 1000)
    _write_idx(folder / f"train-images-idx3-ubyte{suffix}", train_x)
    _write_idx(folder / f"train-labels-idx1-ubyte{suffix}", train_y)
    _write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", test_x)
    _write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", test_y)

    datamodule = make_datamodule("mnist", data_dir=tmp_path, download=False, seed=4)
    assert isinstance(datamodule, MNISTDataModule)
    assert (datamodule.num_classes, datamodule.input_shape) == (10, (1, 28, 28))
    datamodule.setup("fit")
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (
        540,
        60,
        200,
    )
    images, labels = datamodule.test_set.tensors
    assert images.shape == (200, 1, 28, 28)
    assert np.array_equal(labels.numpy(), test_y)
    val_images, val_labels = datamodule.val_tensors()
    restored = val_images * datamodule.std.item() + datamodule.mean.item()
    val = datamodule.split_indices["val"]
    assert np.allclose(restored[:, 0].numpy(), train_x[val] / 255.0, atol=1e-5)
    assert np.array_equal(val_labels.numpy(), train_y[val])
    assert np.array_equal(read_mnist_idx(folder, "test")[0], test_x)


def test_mnist_without_files_and_download_says_where_to_put_them(tmp_path):
    with pytest.raises(DatasetUnavailableError) as error:
        make_datamodule("fashion_mnist", data_dir=tmp_path, download=False)
    message = _one_line(error)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message


def test_read_idx_rejects_bad_files(tmp_path):
    not_idx = tmp_path / "a.idx"
    not_idx.write_bytes(b"hello world")
    with pytest.raises(InvalidDatasetError, match="not an IDX file"):
        read_idx(not_idx)
    truncated = tmp_path / "b.idx"
    _write_idx(truncated, np.zeros((3, 4, 4), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-5])
    with pytest.raises(InvalidDatasetError, match="truncated"):
        read_idx(truncated)


# --- torchvision data sets --------------------------------------------------------------


@pytest.mark.skipif(TORCHVISION, reason="torchvision loads here; this checks the error without it")
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_torchvision_sets_without_torchvision_raise_a_clear_error(tmp_path, name):
    with pytest.raises(TorchvisionUnavailableError) as error:
        make_datamodule(name, data_dir=tmp_path)
    message = _one_line(error)
    assert "tucker-sweep[vision]" in message
    assert str(tmp_path) in message  # where to put the files instead


@pytest.mark.skipif(not TORCHVISION, reason="needs a torchvision that loads beside this torch")
def test_cifar10_without_files_and_download_says_where_to_put_them(tmp_path):
    datamodule = CIFAR10DataModule(data_dir=tmp_path, download=False)
    assert (datamodule.num_classes, datamodule.input_shape) == (10, (3, 32, 32))
    with pytest.raises(DatasetUnavailableError) as error:
        datamodule.prepare_data()
    assert "cifar-10-python.tar.gz" in _one_line(error)
