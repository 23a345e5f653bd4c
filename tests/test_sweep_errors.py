"""Bad sweep input: one line on stderr, exit status 2, and nothing recorded."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
import yaml
from mlflow.tracking import MlflowClient
from support.cli import run_cli, run_cli_in_process, write_config

from lightning_modules.data import ArrayDataModule, DatasetWarning
from sweep.errors import ConfigError
from sweep.tuning.cluster import check_reachable, connect_ray

BAD_CONFIGS = [
    ({"colour": "blue"}, "colour: unknown key"),
    ({"scheduler": {"grace": 2}}, "scheduler.grace: unknown key"),
    ({"search": {"num_samples": "many"}}, "search.num_samples: Input should be a valid integer"),
    ({"scheduler": {"max_t": 4, "grace_period": 5}, "stopping": {"max_epochs": 4}},
     "scheduler.grace_period (5) exceeds scheduler.max_t (4)"),
    ({"scheduler": {"max_t": 30}}, "scheduler.max_t (30) exceeds stopping.max_epochs (27)"),
    ({"search": {"algorithm": "grid"}}, "grid search needs a list of learning rates"),
    ({"search": {"algorithm": "bayes"}}, "search.algorithm: Input should be 'random', 'grid'"),
    ({"decomposition": {"thresholds": [0.5, 1.5]}}, "energy thresholds must be in (0, 1]"),
    ({"decomposition": {"ratios": {"out": [0]}}}, "decomposition.ratios.out: ratios must be"),
    ({"decomposition": {"init": ["svd"]}}, "decomposition.init[0]: Input should be 'hooi'"),
    ({"resources": {"cpu": 0}}, "resources.cpu: Input should be greater than 0"),
    ({"resources": {"gpu": 1.5}}, "resources.gpu: a fraction must be below 1"),
    ({"name": "my sweep"}, "name: String should match pattern"),
    ({"search": {"lr": {"low": 0.1, "high": 0.01}}}, "search.lr: low (0.1) must be below high"),
    ({"data": {"name": "imagenet"}}, "unknown dataset 'imagenet'"),
    ({"model": {"name": "vgg99"}}, "unknown model 'vgg99'"),
    ({"decomposition": {"layers": ["block9.conv1"]}}, "unknown layer(s) block9.conv1"),
    # Multi-worker trials that cannot run (resources.workers).
    ({"resources": {"workers": 2, "gpu": 0.5}}, "resources: gpu: 0.5 per worker with 2 workers"),
    ({"resources": {"workers": 0}}, "resources.workers: Input should be greater than or equal"),
    ({"resources": {"workers": 3}}, "training.batch_size: 64 does not split over resources."),
]  # fmt: skip


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
def test_bad_sweep_config_is_one_line_and_exit_2(tmp_path, capfd, config, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli_in_process("launch", str(path), cwd=tmp_path, capfd=capfd)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert message in lines[0]
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "ray_results").exists()


def test_a_bad_config_through_the_console_script_is_one_line_and_exit_2(tmp_path):
    # The cases above call the CLI's entry point in the test process; this one runs the
    # installed console script, as a user does.
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "vgg99"}}))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tucker-sweep"), "launch", str(path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tucker-sweep: error: unknown model 'vgg99'; known models: vgg_small, resnet8, resnet20, "
        "resnet32, mobilenet_v2_small"
    ]
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["launch", "missing.yaml"], "config file not found: missing.yaml"),
        (["launch", "--resume", "nothing-here"], "no sweep named 'nothing-here'"),
        (["launch", "--num-samples", "0"], "--num-samples"),
        (["launch", "--algorithm", "annealing"], "--algorithm: Input should be 'random'"),
        (["seed", "--thresholds", "0.5,2"], "energy thresholds must be in (0, 1]"),
        (["seed", "--checkpoint", "nope.ckpt"], "checkpoint not found: nope.ckpt"),
        (["train", "--precision", "16-mixed"], "precision: 16-mixed (fp16 AMP) needs a GPU"),
        (
            ["train", "--compile", "reduce-overhead", "--accelerator", "cpu"],
            "compile: reduce-overhead (CUDA graphs) needs a GPU",
        ),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capfd, args, message):
    result = run_cli_in_process(*args, cwd=tmp_path, capfd=capfd)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]


@pytest.mark.slow
def test_gpu_requested_without_gpus_is_refused_after_connecting(tmp_path):
    config = write_config(tmp_path, {"resources.gpu": 0.25})
    result = run_cli("launch", str(config), cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        "resources.gpu: 0.25 GPU per trial requested, but the Ray cluster has no GPU"
        in (result.stderr.strip().splitlines()[-1])
    )
    assert not (tmp_path / "ray_results").exists()


@pytest.mark.slow
def test_an_existing_sweep_name_is_refused(tmp_path):
    config = write_config(tmp_path, {})
    (tmp_path / "ray_results" / "test-sweep" / "tucker_sweep").mkdir(parents=True)
    result = run_cli("launch", str(config), cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--resume test-sweep" in result.stderr


def _listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses of TCP sockets in LISTEN state owned by the given processes."""
    output = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    found = set()
    for line in output.splitlines():
        if any(f"pid={pid}," in line for pid in pids):
            found.add(line.split()[3].rsplit(":", 1)[0])
    return found


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only():
    assert not ray.is_initialized()
    try:
        description = connect_ray(None)
        assert "127.0.0.1" in description
        output = subprocess.run(["ps", "-eo", "pid,comm"], capture_output=True, text=True)
        ray_pids = {int(line.split()[0]) for line in output.stdout.splitlines()[1:]
                    if any(n in line for n in ("raylet", "gcs_server", "ray::"))}  # fmt: skip
        addresses = _listening_addresses(ray_pids)
        assert addresses, "found no listening Ray process"
        loopback = {"127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"}
        assert addresses <= loopback, addresses
    finally:
        ray.shutdown()


# ---- every bad input of every command: one line naming its source, status 2 (issue 13) ---------


def _binary_config(folder: Path) -> None:
    (folder / "bad.yaml").write_bytes(b"\xff\xfe\x00\x80binary")


def _folder_and_file(folder: Path) -> None:
    (folder / "somedir").mkdir()
    (folder / "afile").write_text("")


def _checkpoints(folder: Path) -> None:
    (folder / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(3000))
    torch.save([1, 2, 3], folder / "list.ckpt")
    torch.save({"weights": torch.zeros(2)}, folder / "dict.ckpt")


def _npz_files(folder: Path) -> None:
    images = np.random.default_rng(0).random((60, 8, 8), dtype=np.float32)
    labels = np.arange(60) % 2
    with_nan = images.copy()
    with_nan[4, 2, 2] = np.nan
    np.savez(folder / "nan.npz", x=with_nan, y=labels)
    np.savez(folder / "one.npz", x=images[:1], y=labels[:1])
    (folder / "text.npz").write_text("x,y\n0,1\n")


def _resumable_elsewhere(folder: Path) -> None:
    """A sweep folder beside the storage path, that '../x' would reach."""
    (folder / "ray_results").mkdir()
    stored = folder / "x" / "tucker_sweep"
    stored.mkdir(parents=True)
    (stored / "config.yaml").write_text("name: x\n")


def _storage_is_a_file(folder: Path) -> None:
    (folder / "afile").write_text("")
    write_config(folder, {"cluster.storage_path": str(folder / "afile")})


def _config(folder: Path) -> None:
    write_config(folder, {})


def _train_config(folder: Path) -> None:
    (folder / "train.yaml").write_text("epochs: 1\n")


BAD_INPUTS = [
    (_binary_config, ["launch", "bad.yaml"], "bad.yaml: not a YAML text file (not UTF-8"),
    (_binary_config, ["seed", "bad.yaml"], "bad.yaml: not a YAML text file"),
    (_binary_config, ["train", "--config", "bad.yaml"], "bad.yaml: not a YAML text file"),
    (_binary_config, ["report", "--config", "bad.yaml"], "bad.yaml: not a YAML text file"),
    (_folder_and_file, ["report", "--tracking-uri", "somedir"], "--tracking-uri: somedir is a"),
    (_folder_and_file, ["export", "--tracking-uri", "somedir"], "--tracking-uri: somedir is a"),
    (_folder_and_file, ["ui", "--tracking-uri", "somedir"], "--tracking-uri: somedir is a folder"),
    (_folder_and_file, ["report", "--tracking-uri", "afile"], "--tracking-uri: afile is a file"),
    (_folder_and_file, ["report", "--out", "afile"], "--out: afile is a file, not a folder"),
    (_folder_and_file, ["export", "--out", "afile"], "--out: afile is a file, not a folder"),
    (_folder_and_file, ["report", "--out", "afile/sub"], "--out: cannot create folder afile/sub"),
    (_folder_and_file, ["seed", "--out", "afile"], "--out: afile is a file, not a folder"),
    (_checkpoints, ["seed", "--checkpoint", "random.ckpt"], "is not a PyTorch checkpoint"),
    (_checkpoints, ["seed", "--checkpoint", "list.ckpt"], "holds a list, not a Lightning"),
    (_checkpoints, ["seed", "--checkpoint", "dict.ckpt"], "lacks pytorch-lightning_version"),
    (_npz_files, ["train", "--data", "npz", "--data-path", "nan.npz"], "NaN or infinite values"),
    (_npz_files, ["train", "--data", "npz", "--data-path", "one.npz"], "holds 1 example(s)"),
    (_npz_files, ["train", "--data", "npz", "--data-path", "text.npz"], "is not an .npz archive"),
    (_config, ["launch", "sweep.yaml", "--num-samples", "100000"],
     "--num-samples: Input should be less than or equal to 10000"),
    (_config, ["launch", "sweep.yaml", "--name", "a b"], "--name: String should match pattern"),
    (_train_config, ["train", "-c", "train.yaml", "--optimizer", "lion"], "--optimizer: Input"),
    (_resumable_elsewhere, ["launch", "--resume", "../x"], "--resume: '../x' is not a sweep name"),
    (_storage_is_a_file, ["launch", "sweep.yaml"], "sweep.yaml: cluster.storage_path: "),
    (_folder_and_file, ["launch", "--storage-path", "afile"], "--storage-path: afile is a file"),
]  # fmt: skip


@pytest.mark.parametrize(("setup", "args", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_naming_its_source_and_exit_2(tmp_path, capfd, setup, args, message):
    setup(tmp_path)
    result = run_cli_in_process(*args, cwd=tmp_path, capfd=capfd)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
    assert "tucker-sweep-" not in lines[0]  # never a temporary copy the user did not make
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded, nothing left RUNNING


def _runs(folder: Path) -> list:
    if not (folder / "mlflow.db").exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiments = [found.experiment_id for found in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


UNREACHABLE = [
    (["report", "--tracking-uri", "http://127.0.0.1:9"],
     "cannot reach the MLflow tracking server at http://127.0.0.1:9 (connection refused)"),
    (["train", "--tracking-uri", "http://127.0.0.1:9"],
     "cannot reach the MLflow tracking server at http://127.0.0.1:9 (connection refused)"),
    (["launch", "--address", "127.0.0.1:9"],
     "cannot reach the Ray cluster at 127.0.0.1:9 (connection refused)"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), UNREACHABLE)
def test_an_unreachable_server_is_one_short_line_at_once(tmp_path, args, message):
    started = time.monotonic()
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    assert time.monotonic() - started < 60  # not MLflow's or Ray's minutes of retries
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines == [f"tucker-sweep: error: {message}"], result.stderr[-2000:]
    assert _runs(tmp_path) == []


def test_a_blackholed_ray_address_times_out_in_one_line():
    with socket.socket() as listener:  # a bound port that never accepts: nothing answers
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
            check_reachable(f"127.0.0.1:{port}", timeout_s=0.5)
        listener.listen()
        check_reachable(f"ray://127.0.0.1:{port}", timeout_s=5)  # listening: fine
    with pytest.raises(ConfigError, match="expected host:port"):
        check_reachable("no-port-here")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU")
def test_gpu_training_without_a_gpu_is_refused_before_any_run(tmp_path):
    result = run_cli("train", "--accelerator", "gpu", "--epochs", "1", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "tucker-sweep: error: --accelerator: gpu asked for, but torch finds no CUDA GPU on this "
        "host; use cpu or auto"
    ]
    assert not (tmp_path / "mlflow.db").exists()


def test_labels_that_skip_classes_warn_of_the_wider_head():
    labels = np.arange(40) % 2 * 7  # classes 0 and 7 only
    with pytest.warns(DatasetWarning, match=r"use 2 of the classes 0\.\.7 .* gets 8 outputs"):
        datamodule = ArrayDataModule(np.zeros((40, 4, 4), np.float32), labels)
    assert datamodule.num_classes == 8


@pytest.mark.slow  # one real (tiny) training run: about 10 s on 2 CPUs
def test_the_cli_prints_the_label_gap_warning_as_one_line(tmp_path):
    images = np.random.default_rng(0).random((60, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "gaps.npz", x=images, y=np.arange(60) % 2 * 7)
    result = run_cli("train", "--data", "npz", "--data-path", "gaps.npz", "--epochs", "1",
                     "--no-progress", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1 and warnings[0].startswith("tucker-sweep: warning: labels y use 2")
