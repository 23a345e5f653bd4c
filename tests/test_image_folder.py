"""The image_folder data module on real PNG trees written here from scikit-learn's digits (8x8
upscaled to 16x16, one folder per digit): labels, splits, transforms, normalisation, bad files,
a real sweep through the CLI, and an s3:// root served by moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
import ray
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from sklearn.datasets import load_digits
from support.cli import run_cli, trial_runs, write_config
from torch.utils.data import DataLoader

from lightning_modules.data import (
    DATA_DIR_ENV,
    DataError,
    DatasetUnavailableError,
    ImageFolderDataModule,
    InvalidDatasetError,
    UnreadableImageError,
    make_datamodule,
)
from lightning_modules.data.image_dataset import ImageFileDataset
from lightning_modules.data.image_transforms import EvalTransform, TrainTransform, crop_box
from lightning_modules.module import TuckerClassifier
from lightning_modules.trainer import make_trainer
from sweep.config import SweepConfig
from sweep.errors import user_message
from sweep.tuning.launch_config import with_absolute_paths

DIGITS = load_digits()
COUNT = 300  # about 30 images per class
SIZE = 16


def write_digits(folder: Path, *, split_folders: bool = False, mode: str = "L") -> Path:
    """COUNT digits as SIZE x SIZE PNGs in folder/<digit>/ (or folder/<split>/<digit>/)."""
    for index in range(COUNT):
        pixels = np.uint8(DIGITS.images[index] * (255 / 16))
        image = Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        split = ("test", "val", "train", "train", "train")[index % 5] if split_folders else ""
        path = folder / split / str(DIGITS.target[index]) / f"{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.convert(mode).save(path)
    return folder


@pytest.fixture(scope="module")
def digits_tree(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def split_tree(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("split"), split_folders=True)


@pytest.fixture(autouse=True)
def own_data_folder(tmp_path, monkeypatch) -> None:
    """The verdicts of image checks are kept in the data folder: one per test, in its scratch
    folder (a CLI or Ray worker the test starts inherits it)."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))


@pytest.fixture
def own_tree(digits_tree, tmp_path) -> Path:
    """A copy of the digits tree for a test to damage."""
    return Path(shutil.copytree(digits_tree, tmp_path / "tree"))


def folder_label(path: str) -> int:
    return int(Path(path).parent.name)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


# --- labels and splits ------------------------------------------------------------------------


def test_class_folders_give_the_labels_and_a_seeded_stratified_split(digits_tree):
    datamodule = make_datamodule("image_folder", root=str(digits_tree), image_size=SIZE)
    assert datamodule.classes == tuple(str(digit) for digit in range(10))
    assert (datamodule.num_classes, datamodule.input_shape) == (10, (1, SIZE, SIZE))
    assert datamodule.skipped_images == []
    datamodule.setup("fit")
    splits = {"train": datamodule.train_set, "val": datamodule.val_set,
              "test": datamodule.test_set}  # fmt: skip
    assert {part: len(split) for part, split in splits.items()} == {
        "train": 210, "val": 45, "test": 45,
    }  # fmt: skip
    every_path = [path for split in splits.values() for path in split.paths]
    assert len(set(every_path)) == COUNT  # disjoint, and nothing left out
    for split in splits.values():
        assert [folder_label(path) for path in split.paths] == split.labels.tolist()
    for split in ("val", "test"):  # stratified: every class in every split
        assert set(splits[split].labels.tolist()) == set(range(10))
    same = ImageFolderDataModule(digits_tree, image_size=SIZE)
    same.setup()
    assert same.val_set.paths == datamodule.val_set.paths
    other = ImageFolderDataModule(digits_tree, image_size=SIZE, seed=1)
    other.setup()
    assert other.val_set.paths != datamodule.val_set.paths


def test_train_val_test_folders_are_the_splits(split_tree, tmp_path):
    datamodule = ImageFolderDataModule(split_tree, image_size=SIZE)
    datamodule.setup()
    for part, split in (("train", datamodule.train_set), ("val", datamodule.val_set),
                        ("test", datamodule.test_set)):  # fmt: skip
        assert all(path.startswith(f"{part}/") for path in split.paths)
        assert len(split) == len(list((split_tree / part).glob("*/*.png")))
        assert [folder_label(path) for path in split.paths] == split.labels.tolist()
    # Without test/, the test split is carved from train/ (test_fraction of it, stratified).
    shutil.copytree(split_tree / "train", tmp_path / "no-test" / "train")
    shutil.copytree(split_tree / "val", tmp_path / "no-test" / "val")
    carved = ImageFolderDataModule(tmp_path / "no-test", image_size=SIZE, test_fraction=0.2)
    carved.setup()
    assert all(path.startswith("val/") for path in carved.val_set.paths)
    assert all(path.startswith("train/") for path in carved.test_set.paths)
    assert len(carved.test_set) == round(0.2 * 180)
    assert not set(carved.test_set.paths) & set(carved.train_set.paths)
    assert set(carved.test_set.labels.tolist()) == set(range(10))


# --- shapes, transforms, normalisation --------------------------------------------------------


def test_batches_have_the_configured_size_and_the_images_channels(digits_tree, tmp_path):
    datamodule = ImageFolderDataModule(digits_tree, image_size=12, batch_size=32)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (32, 1, 12, 12) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert datamodule.val_tensors()[0].shape == (45, 1, 12, 12)
    colour = write_digits(tmp_path / "rgb", mode="RGB")
    assert ImageFolderDataModule(colour, image_size=SIZE).input_shape == (3, SIZE, SIZE)
    as_colour = ImageFolderDataModule(digits_tree, image_size=SIZE, channels=3)
    images, _ = as_colour.val_tensors()
    assert images.shape[1] == 3
    assert torch.equal(images[:, 0], images[:, 2])  # grey converted to RGB: equal channels


def test_train_crops_stay_inside_the_image_with_their_area_share():
    generator = torch.Generator().manual_seed(0)
    for width, height in ((16, 16), (40, 10), (10, 40)):
        for _ in range(200):
            left, top, right, bottom = crop_box(width, height, (0.25, 1.0), generator)
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            share = (right - left) * (bottom - top) / (width * height)
            assert share <= 1.0
            if (width, height) == (16, 16):
                assert share >= 0.2  # 0.25, give or take the rounding of a side


def test_train_flips_half_the_time_and_evaluation_is_symmetric():
    pixels = np.uint8(DIGITS.images[7] * (255 / 16))
    image = Image.fromarray(pixels).resize((SIZE, SIZE))
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # The whole image (area share 1; an aspect other than 1 does not fit: the fallback is the
    # whole image), flipped or not.
    train = TrainTransform(SIZE, scale=(1.0, 1.0))
    generator = torch.Generator().manual_seed(0)
    outputs = [np.asarray(train(image, generator)) for _ in range(40)]
    plain = [np.array_equal(out, np.asarray(image)) for out in outputs]
    flipped = [np.array_equal(out, np.asarray(mirrored)) for out in outputs]
    assert all(a != b for a, b in zip(plain, flipped, strict=True))
    assert 8 <= sum(flipped) <= 32
    evaluation = EvalTransform(12)
    of_mirrored = np.asarray(evaluation(mirrored), dtype=int)
    mirrored_back = np.asarray(evaluation(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT), int)
    # The centre crop is centred: equal up to the resampling's rounding (a crop one pixel off
    # centre differs by tens of levels).
    assert np.abs(of_mirrored - mirrored_back).max() <= 1


def _first_batches(datamodule: ImageFolderDataModule, epochs: int) -> list[torch.Tensor]:
    """The first batch of each epoch, every epoch run to its end."""
    loader = datamodule.train_dataloader()
    epochs_batches = [list(loader) for _ in range(epochs)]
    return [batches[0][0] for batches in epochs_batches]


def test_augmentation_in_workers_repeats_with_the_seed(digits_tree):
    def module(seed: int) -> ImageFolderDataModule:
        return ImageFolderDataModule(
            digits_tree, image_size=SIZE, seed=seed, num_workers=1, crop_scale=[0.3, 1.0]
        )

    first, second = _first_batches(module(0), 2)
    assert not torch.equal(first, second)  # new crops (and order) every epoch
    again = _first_batches(module(0), 2)
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])
    assert not torch.equal(first, _first_batches(module(1), 1)[0])
    evaluated = module(0)
    assert torch.equal(evaluated.val_tensors()[0], evaluated.val_tensors()[0])


def _evaluation_view(datamodule: ImageFolderDataModule, paths: list[str]) -> torch.Tensor:
    view = ImageFileDataset(
        datamodule.source, paths, np.zeros(len(paths)), mode=datamodule.mode,
        transform=EvalTransform(datamodule.image_size), mean=datamodule.mean, std=datamodule.std,
    )  # fmt: skip
    return torch.stack([view[index][0] for index in range(len(view))])


def test_normalised_with_the_training_split_statistics_or_the_given_ones(digits_tree):
    datamodule = ImageFolderDataModule(digits_tree, image_size=SIZE)
    datamodule.setup()
    # 210 training images, within the sample of 256: the statistics are the whole split's.
    train = _evaluation_view(datamodule, datamodule.train_set.paths)
    assert abs(float(train.mean())) < 1e-4
    assert float(train.std(unbiased=False)) == pytest.approx(1.0, rel=1e-3)
    val = _evaluation_view(datamodule, datamodule.val_set.paths)
    assert abs(float(val.mean())) > 1e-3  # other images: the val split is not in them
    given = ImageFolderDataModule(digits_tree, image_size=SIZE, mean=0.5, std=[0.25])
    images, _ = given.val_tensors()
    unit = ImageFolderDataModule(digits_tree, image_size=SIZE, mean=0.0, std=1.0)
    pixels, _ = unit.val_tensors()
    torch.testing.assert_close(images, (pixels - 0.5) / 0.25)
    with pytest.raises(InvalidDatasetError, match="mean must be 3 number"):
        ImageFolderDataModule(digits_tree, image_size=SIZE, channels=3, mean=[0.5])


# --- bad input --------------------------------------------------------------------------------


def test_a_root_with_no_images_or_one_class_is_one_line_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes" / "cats").mkdir(parents=True)
    (tmp_path / "notes" / "cats" / "readme.txt").write_text("not an image")
    for root in (tmp_path / "empty", tmp_path / "notes"):
        with pytest.raises(InvalidDatasetError) as error:
            ImageFolderDataModule(root, image_size=SIZE)
        assert f"no images in class folders under {root}" in one_line(error)
    (tmp_path / "one" / "cats").mkdir(parents=True)
    Image.new("L", (4, 4)).save(tmp_path / "one" / "cats" / "a.png")
    with pytest.raises(InvalidDatasetError) as error:
        ImageFolderDataModule(tmp_path / "one", image_size=SIZE)
    assert f"{tmp_path / 'one'} holds a single class (cats)" in one_line(error)
    with pytest.raises(DatasetUnavailableError) as error:
        ImageFolderDataModule(tmp_path / "missing", image_size=SIZE)
    assert f"no folder at {tmp_path / 'missing'}" in one_line(error)
    with pytest.raises(InvalidDatasetError, match="image_size must be a whole number"):
        ImageFolderDataModule(tmp_path / "one", image_size=16.5)


def _damage(tree: Path) -> tuple[Path, Path]:
    """A truncated PNG and a text file named .png."""
    truncated, not_png = tree / "3" / "0003.png", tree / "5" / "0005.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    not_png.write_text("not a PNG")
    return truncated, not_png


def test_a_corrupt_image_is_one_line_naming_the_file(own_tree):
    truncated, not_png = _damage(own_tree)
    with pytest.raises(UnreadableImageError) as error:
        ImageFolderDataModule(own_tree, image_size=SIZE)
    message = one_line(error)
    assert f"cannot read image {truncated}: " in message  # the first, by path
    assert "(and 1 more bad images)" in message and "skip_bad_images" in message
    not_png.unlink()
    with pytest.raises(UnreadableImageError) as error:  # checked again: the files changed
        ImageFolderDataModule(own_tree, image_size=SIZE)
    assert "more bad images" not in one_line(error)


def test_skip_bad_images_leaves_them_out_and_lists_them(own_tree):
    truncated, not_png = _damage(own_tree)
    datamodule = ImageFolderDataModule(own_tree, image_size=SIZE, skip_bad_images=True)
    assert datamodule.skipped_images == [str(truncated), str(not_png)]
    datamodule.setup()
    kept = datamodule.train_set.paths + datamodule.val_set.paths + datamodule.test_set.paths
    assert len(kept) == COUNT - 2
    assert not {"3/0003.png", "5/0005.png"} & set(kept)
    for _ in datamodule.train_dataloader():
        pass  # every kept image decodes


def test_a_file_that_breaks_after_the_check_fails_in_the_worker_in_one_line(own_tree):
    datamodule = ImageFolderDataModule(own_tree, image_size=SIZE, num_workers=1)
    datamodule.setup()
    broken, deleted = datamodule.val_set.paths[3], datamodule.val_set.paths[5]
    (own_tree / broken).write_bytes((own_tree / broken).read_bytes()[:60])
    (own_tree / deleted).unlink()
    # torch raises a worker's error again in the main process with the worker's traceback as
    # its text; the error keeps its own line only.
    with pytest.raises(UnreadableImageError) as error:
        datamodule.val_tensors()
    assert f"cannot decode image {own_tree / broken}: " in one_line(error)
    single = DataLoader(datamodule.val_set, batch_size=1, sampler=[5], num_workers=1)
    with pytest.raises(UnreadableImageError) as error:
        next(iter(single))
    assert f"cannot read image {own_tree / deleted}: " in one_line(error)


def _corrupt_in_place(path: Path) -> None:
    """Bytes changed, size and modification time kept: damage the check cannot see, as from a
    disk after the files were checked."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[40:-20] = bytes(len(data) - 60)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _val_images(datamodule: ImageFolderDataModule) -> int:
    return len(datamodule.val_tensors()[0])


@pytest.mark.slow
def test_a_decode_failure_in_a_ray_task_is_one_line_naming_the_file_for_the_cli(
    own_tree, monkeypatch
):
    # Ray's workers import this module to run its function: the tests folder on their path.
    tests = str(Path(__file__).parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    )
    datamodule = ImageFolderDataModule(own_tree, image_size=SIZE, num_workers=1)
    datamodule.setup()
    broken = own_tree / datamodule.val_set.paths[0]
    _corrupt_in_place(broken)  # as the dense baseline would meet it, in its Ray task
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with pytest.raises(DataError) as error:
            ray.get(ray.remote(_val_images).remote(datamodule))
    finally:
        ray.shutdown()
    assert "ray::" in str(error.value)  # Ray's text: the task's traceback
    message = user_message(error.value)  # what the CLI prints
    assert "\n" not in message and f"cannot decode image {broken}: " in message


# --- a real sweep -----------------------------------------------------------------------------


def test_a_relative_root_is_made_absolute_for_trials_in_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = {"root": "images", "image_size": SIZE}
    settings = SweepConfig(data={"name": "image_folder", "options": options})
    assert with_absolute_paths(settings).data.options["root"] == str(tmp_path / "images")
    remote = SweepConfig(data={"name": "image_folder", "options": {**options, "root": "s3://b/x"}})
    assert with_absolute_paths(remote).data.options["root"] == "s3://b/x"


def sweep_overrides(root: str) -> dict:
    """A small sweep of a narrow VGG on the 16x16 tree: 2 trials, 2 epochs, 1 loader worker."""
    options = {"root": root, "image_size": SIZE, "num_workers": 1, "crop_scale": [0.5, 1.0]}
    return {
        "data": {"name": "image_folder", "options": options},
        "model.options": {"width": 8},
        "training.batch_size": 16,  # enough steps in 2 epochs to learn
        "decomposition.seed_epochs": 1,
        "search.num_samples": 2,
        "search.lr": {"low": 0.05, "high": 0.1},
        "scheduler.name": "none",
        "scheduler.max_t": 2,
        "stopping.max_epochs": 2,
        "deploy.batch_sizes": [1],
    }


def _sweep_run(tmp_path: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`tucker_sweep.kind` = 'sweep'")
    return client, parent


@pytest.mark.slow
def test_a_sweep_on_a_png_tree_records_its_trials_and_skipped_images(own_tree, tmp_path):
    (truncated, _) = _damage(own_tree)
    overrides = sweep_overrides(str(own_tree))
    overrides["data"]["options"]["skip_bad_images"] = True
    result = run_cli("launch", str(write_config(tmp_path, overrides)), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left out 2 unreadable images" in result.stdout
    runs = trial_runs(tmp_path)
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags
        assert run.data.metrics["epochs_run"] == 2
    client, parent = _sweep_run(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["skipped_images"] == 2
    listed = client.download_artifacts(parent.info.run_id, "skipped_images.txt", str(tmp_path))
    assert Path(listed).read_text().splitlines()[0] == str(truncated)


# --- an s3:// root ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, with test credentials in the environment (what the
    data module's pyarrow S3 filesystem reads); stopped whatever the test does."""
    from moto.server import ThreadedMotoServer

    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    requests = logging.getLogger("werkzeug")  # the server's line per request
    level = requests.level
    requests.setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
        requests.setLevel(level)


def upload(tree: Path, endpoint: str, bucket: str = "images") -> str:
    """The tree copied to s3://<bucket>/digits; its URI as the data module takes it."""
    s3 = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True)
    s3.create_dir(bucket)
    pafs.copy_files(str(tree), f"{bucket}/digits", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=s3)  # fmt: skip
    return f"s3://{bucket}/digits?endpoint_override={endpoint}&scheme=http&region=us-east-1"


@pytest.mark.slow
def test_an_s3_root_gives_the_local_tree_and_fits_with_worker_processes(digits_tree, s3_endpoint):
    root = upload(digits_tree, s3_endpoint)
    remote, local = (ImageFolderDataModule(where, image_size=SIZE, num_workers=1, batch_size=16)
                     for where in (root, digits_tree))  # fmt: skip
    remote.setup()
    local.setup()
    assert remote.val_set.paths == local.val_set.paths
    assert torch.equal(remote.mean, local.mean) and torch.equal(remote.std, local.std)
    # Decoded and augmented in a worker process that opened S3 itself: the same batch.
    assert torch.equal(next(iter(remote.train_dataloader()))[0],
                       next(iter(local.train_dataloader()))[0])  # fmt: skip
    classifier = TuckerClassifier(in_channels=1, input_size=(SIZE, SIZE), max_epochs=1,
                                  model_options={"width": 8})  # fmt: skip
    trainer = make_trainer(1)
    trainer.fit(classifier, datamodule=remote)
    assert trainer.global_step == len(remote.train_dataloader()) == 14  # 210 images, 16 a batch
    assert torch.isfinite(trainer.callback_metrics["val_loss"])
    with pytest.raises(DatasetUnavailableError) as error:
        ImageFolderDataModule(root.replace("/digits?", "/nothing?"), image_size=SIZE)
    assert "no folder at s3://images/nothing" in one_line(error)
