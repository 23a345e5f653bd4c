"""The benchmarks run: a tiny CPU run of each one that has a CPU mode, checking its JSON."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
