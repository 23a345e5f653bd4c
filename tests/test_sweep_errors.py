"""Bad sweep input: one line on stderr, exit status 2, and nothing recorded."""

import subprocess

import pytest
import ray
import yaml
from support.cli import run_cli, write_config

from sweep.tuning.cluster import connect_ray

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
]  # fmt: skip


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
def test_bad_sweep_config_is_one_line_and_exit_2(tmp_path, config, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("launch", str(path), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert message in lines[0]
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "ray_results").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["launch", "missing.yaml"], "config file not found: missing.yaml"),
        (["launch", "--resume", "nothing-here"], "no sweep named 'nothing-here'"),
        (["launch", "--num-samples", "0"], "--num-samples"),
        (["launch", "--algorithm", "annealing"], "search.algorithm"),
        (["seed", "--thresholds", "0.5,2"], "energy thresholds must be in (0, 1]"),
        (["seed", "--checkpoint", "nope.ckpt"], "checkpoint not found: nope.ckpt"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path, timeout=120)
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
