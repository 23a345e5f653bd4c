"""The benchmarks run: a tiny CPU run of each one that has a CPU mode, checking its JSON."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_train_speed_runs_on_a_cpu_and_writes_its_rows(tmp_path):
    out = tmp_path / "speed.json"
    args = ["--device", "cpu", "--quick", "--models", "vgg_small", "--precisions", "32-true",
            "--modes", "eager", "--memory-formats", "nchw,channels_last", "--warmup", "1",
            "--min-run-time", "0.01", "--out", str(out)]  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_train_speed.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    plans = {row["plan"] for row in report["models"]}
    assert plans == {"dense", "ratio 0.5", "ratio 0.25", "allocated 10x"}
    assert {row["memory_format"] for row in report["models"]} == {"nchw", "channels_last"}
    assert all(row["step_ms"] > 0 for row in report["models"])
    dense = next(r for r in report["models"] if r["plan"] == "dense")
    tucker = next(r for r in report["models"] if r["plan"] == "ratio 0.25")
    assert tucker["params"] < dense["params"] / 5
    autos = [row for row in report["layers"] if row["method"] == "auto"]
    assert autos and all(row["auto_choice"] in {"reconstructed", "factorized", "folded"}
                         for row in autos)  # fmt: skip
    assert report["checks"] == []  # GPU targets are not judged on a CPU
    assert "not checked on cpu" in result.stdout


def test_inference_speed_quick_run_writes_measured_rows_and_checks(tmp_path):
    out = tmp_path / "inference.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inference_speed.py"), "--quick",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    rows, skipped = report["rows"], report["skipped"]
    keys = {"model", "input", "plan", "plan_metric", "plan_target", "plan_estimate", "plan_met",
            "plan_source", "runtime", "device", "threads", "batch", "dtype", "dense_ms",
            "compressed_ms", "speedup", "params_ratio", "flop_ratio", "form_flop_ratio",
            "forms", "layer_forms"}  # fmt: skip
    assert rows and all(set(row) == keys for row in rows)
    assert {row["model"] for row in rows} == {"vgg_small", "mobilenet_v2_small", "my_cnn"}
    # A speed-up is measured, so only its sign and its definition are sure: never that it is > 1.
    for row in rows:
        assert row["dense_ms"] > 0 and row["compressed_ms"] > 0 and row["speedup"] > 0
        assert abs(row["speedup"] - row["dense_ms"] / row["compressed_ms"]) < 1e-9
    runtimes = {row["runtime"] for row in rows}
    assert {"eager-form", "eager-auto", "torchscript"} <= runtimes
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    assert ("onnxruntime" in runtimes) == has_ort
    assert has_ort or any("onnxruntime" in skip["what"] for skip in skipped)
    # Latency plans run where the allocator has the metric, and are skipped with a reason else.
    latency = [row for row in rows if row["plan_metric"] == "latency"]
    assert latency or any(" latency " in skip["what"] and skip["reason"] for skip in skipped)
    forms = [row for row in rows if row["runtime"] == "eager-form"]
    assert all(set(row["layer_forms"].values()) <= {"dense", "folded", "factorized"}
               for row in forms)  # fmt: skip
    train = report["training"]
    assert {row["method"] for row in train} == {"dense", "auto", "reconstructed", "folded",
                                               "factorized"}  # fmt: skip
    assert all(row["step_ms"] > 0 and row["speedup"] > 0 for row in train)
    assert [check["name"][:3] for check in report["checks"]] == ["(a)", "(b)", "(c)", "(d)"]
    for check in report["checks"]:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[check["passed"]]
        assert f"{verdict}  {check['name']}" in result.stdout


def test_seed_speed_quick_run_scores_ranks_and_seeds(tmp_path):
    out = tmp_path / "seed_speed.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "seed_speed.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    (scoring,) = report["scoring"]
    assert scoring["net"] == "resnet18" and scoring["layers"] == 19, "20 convs but the input one"
    assert scoring["new_s"] > 0 and scoring["old_s_extrapolated"] > 0
    # --quick times the old scoring on two shapes only, so no speed-up is claimed.
    assert scoring["old_layers_covered"] < scoring["layers"] and scoring["speedup"] is None
    assert "extrapolated" in result.stdout
    (ranking,) = report["ranking"]
    rhos = [row["rho_random"] for row in ranking["layers"] if row["rho_random"] is not None]
    assert len(ranking["layers"]) == 3 and rhos and all(-1 <= rho <= 1 for rho in rhos)
    # HOOI error <= truncated-HOSVD error <= bound <= sqrt(3) x HOOI error, at every triple.
    ratio = ranking["summary"]["hooi_over_bound"]
    assert 3**-0.5 - 1e-6 <= ratio["min"] <= ratio["max"] <= 1 + 1e-6
    seed = report["seed"]
    assert seed["net"] == "resnet18" and seed["after"]["layers"] == 19
    assert len(seed["after"]["runs_s"]) == 1 and seed["after"]["median_s"] > 0
    assert "dense latency on cpu" in seed["after"]["latency_line"]


def _does_not_load(package: str) -> str | None:
    """Why `package` does not import here, or None."""
    try:
        importlib.import_module(package)
    except Exception as error:  # missing, or a build for another torch ("torchvision::nms")
        return f"{type(error).__name__}: {error}"
    return None


TORCHVISION_MODELS = ROOT / "benchmarks" / "torchvision_models.py"


@pytest.mark.parametrize(("flags", "package"), [([], "torchvision"), (["--timm"], "timm")])
def test_torchvision_models_says_in_one_line_where_the_package_does_not_load(
    tmp_path, flags, package
):
    if _does_not_load(package) is None:
        pytest.skip(f"{package} loads here; this checks the run without it")
    out = tmp_path / "models.json"
    result = subprocess.run(
        [sys.executable, str(TORCHVISION_MODELS), *flags, "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]  # documented: nothing to measure here
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{package} does not load here: "), lines
    assert not out.exists()


@pytest.mark.skipif(
    _does_not_load("torchvision") is not None,
    reason=f"needs a torchvision that loads beside this torch ({_does_not_load('torchvision')})",
)
def test_torchvision_models_quick_run_writes_a_row_per_model(tmp_path):
    out = tmp_path / "models.json"
    result = subprocess.run(
        [sys.executable, str(TORCHVISION_MODELS), "--models", "squeezenet1_1,vit_b_16",
         "--quick", "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    squeezenet, vit = report["rows"]
    assert squeezenet["status"] == "ok", squeezenet
    assert squeezenet["full_rank_error"] <= report["settings"]["tolerance"]
    assert squeezenet["decomposable"] == 25 and squeezenet["params_ratio"] < 1
    assert squeezenet["dense_ms"] > 0 and squeezenet["latency_ratio"] > 0
    assert sum(squeezenet["ratio_forms"].values()) == 25
    # A vision transformer's only conv is its input (patch) conv: a row saying so.
    assert vit["status"] == "not decomposable" and "input one" in vit["reason"]
    assert report["summary"] == {"ok": 1, "not decomposable": 1}
    assert "squeezenet1_1" in result.stdout and "not decomposable" in result.stdout
