"""The benchmarks run: a tiny CPU run of each one that has a CPU mode, checking its JSON."""

from __future__ import annotations

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
