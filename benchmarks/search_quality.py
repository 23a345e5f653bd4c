"""Which search finds the smallest plan that keeps dense accuracy? Five ways at equal budget.

    python benchmarks/search_quality.py [--quick] [--seeds 3] [--mnist-seeds 1] [--out PATH]

Runs real sweeps (local Ray, Lightning trials, a throwaway MLflow store) with the same trial
budget (`search.num_samples`) and the same ASHA settings, changing only how ranks are searched:

    per_layer_unseeded   a candidate triple per layer from the ratio lists
    per_layer_seeded     a candidate triple per layer from the seed's energy thresholds
    ratio                one ratio per mode for every layer
    budget_random        a compression target per trial (log-uniform), minimax allocation,
                         random search
    budget_uniform       the same, with one energy threshold for every layer (the simpler
                         allocation, for comparison)
    budget_mo            minimax allocation, Optuna's multi-objective search on (val_acc, params)

on scikit-learn's digits (`--seeds` searcher seeds) and on real MNIST (the 10,000 test images of
../shared/data/mnist-t10k, written to an .npz at run time and split 70/15/15; `--mnist-seeds`).

Per sweep, from what it recorded in MLflow, judged on the test split (validation selected):
- the dense reference's test accuracy (trained for max_t epochs, like a full trial);
- the largest compression (whole model, parameters) among trials whose test accuracy is within
  0.5 points of the reference's (test accuracy is measured for trials that ran to max_t and for
  the Pareto-front trials);
- the hypervolume of the (test acc, log10 compression) front, both maximised, above the fixed
  reference point (test acc 0.8, log10 compression 0);
- trial-epochs spent.

Targets, per data set: a budget mode (any of the three) reaches at least 1.5x the compression of
per_layer seeded at the 0.5-point tolerance (medians over seeds), with a higher hypervolume in
the majority of seeds. Printed as PASS/FAIL; the script exits 0 either way. JSON goes to
benchmarks/results/search_quality.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

# Run as a plain script from a checkout: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.data import read_mnist_idx
from sweep.config import SweepConfig
from sweep.tuning.launch import launch_sweep

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist-t10k"
TOLERANCE = 0.005  # half a point of test accuracy
HV_REFERENCE = (0.8, 0.0)  # (test acc, log10 compression)
TARGET_FACTOR = 1.5
METHODS: dict[str, dict[str, Any]] = {
    "per_layer_unseeded": {"decomposition": {"mode": "per_layer", "seed": False}},
    "per_layer_seeded": {"decomposition": {"mode": "per_layer", "seed": True}},
    "ratio": {"decomposition": {"mode": "ratio"}},
    "budget_random": {"decomposition": {"mode": "budget"}, "search": {"algorithm": "random"}},
    "budget_uniform": {
        "decomposition": {"mode": "budget", "allocator": "uniform"},
        "search": {"algorithm": "random"},
    },
    "budget_mo": {
        "decomposition": {"mode": "budget"},
        "search": {"algorithm": "optuna", "objectives": ["val_acc", "params"]},
    },
}
BUDGET_METHODS = ("budget_random", "budget_uniform", "budget_mo")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def data_sets(workdir: Path, quick: bool, mnist_dir: Path) -> dict[str, dict[str, Any]]:
    """The sweep settings per data set: data, model, trial budget and ASHA."""
    digits = {
        "data": {"name": "digits"},
        "model": {"name": "vgg_small", "options": {"width": 32}},
        "search": {"num_samples": 8 if quick else 24},
        "scheduler": {"name": "asha", "max_t": 9 if quick else 27, "grace_period": 1,
                      "reduction_factor": 3},
        "stopping": {"max_epochs": 9 if quick else 27},
    }  # fmt: skip
    images, labels = read_mnist_idx(mnist_dir, "test")
    npz = workdir / "mnist-t10k.npz"
    np.savez(npz, x=images, y=labels)
    mnist = {
        "data": {"name": "npz", "options": {"path": str(npz)}},
        "model": {"name": "vgg_small", "options": {"width": 16}},
        "search": {"num_samples": 6 if quick else 16},
        "scheduler": {"name": "asha", "max_t": 3 if quick else 9, "grace_period": 1,
                      "reduction_factor": 3},
        "stopping": {"max_epochs": 3 if quick else 9, "target_accuracy": 0.9},
        "training": {"batch_size": 128},
    }  # fmt: skip
    return {"digits": digits, "mnist": mnist}


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by `points` (both coordinates maximised) above `reference`."""
    useful = sorted(
        ((x, y) for x, y in points if x > reference[0] and y > reference[1]), reverse=True
    )
    area, best_y = 0.0, reference[1]
    for index, (x, y) in enumerate(useful):
        best_y = max(best_y, y)
        next_x = useful[index + 1][0] if index + 1 < len(useful) else reference[0]
        area += (x - next_x) * (best_y - reference[1])
    return area


def sweep_figures(config: SweepConfig, parent_run_id: str) -> dict[str, Any]:
    client = MlflowClient(tracking_uri=config.tracking.resolved_uri())
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
    )
    baseline = next(r for r in children if r.data.tags.get("tucker_sweep.kind") == "baseline")
    trials = [r for r in children if r.data.tags.get("tucker_sweep.kind") == "trial"]
    dense_test = baseline.data.metrics["test_acc"]
    judged = [
        (r.data.metrics["test_acc"], r.data.metrics["compression"])
        for r in trials
        if "test_acc" in r.data.metrics
    ]
    within = [compression for test, compression in judged if test >= dense_test - TOLERANCE]
    return {
        "dense_val_acc": baseline.data.metrics["best_val_acc"],
        "dense_test_acc": dense_test,
        "trials": len(trials),
        "trials_with_test_acc": len(judged),
        "max_compression_within_tolerance": max(within, default=None),
        "hypervolume": hypervolume([(t, math.log10(c)) for t, c in judged], HV_REFERENCE),
        "trial_epochs": int(sum(r.data.metrics.get("epochs_run", 0) for r in trials)),
        "best_val_acc": max(r.data.metrics.get("best_val_acc", 0.0) for r in trials),
    }


def run(method: str, data: str, seed: int, settings: dict[str, Any], workdir: Path) -> dict:
    name = f"{data}-{method}-s{seed}"
    raw = _merge(
        _merge(settings, METHODS[method]),
        {
            "name": name,
            "search": {"seed": seed},
            "tracking": {"uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": "quality"},
            "cluster": {"storage_path": str(workdir / "ray_results")},
        },
    )
    config = SweepConfig.model_validate(raw)
    started = time.perf_counter()
    outcome = launch_sweep(config)
    figures = sweep_figures(config, outcome.parent_run_id)
    figures.update(method=method, data=data, seed=seed, seconds=time.perf_counter() - started)
    return figures


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def verdicts(rows: list[dict]) -> dict[str, dict[str, Any]]:
    """Per data set: the targets, PASS or FAIL, with the figures they were judged on."""
    result = {}
    for data in sorted({row["data"] for row in rows}):
        of = {m: [r for r in rows if r["data"] == data and r["method"] == m] for m in METHODS}
        seeded = _median([r["max_compression_within_tolerance"] for r in of["per_layer_seeded"]])
        budget = {
            m: _median([r["max_compression_within_tolerance"] for r in of[m]])
            for m in BUDGET_METHODS
        }
        best_budget = max((v for v in budget.values() if v is not None), default=None)
        compression_ok = best_budget is not None and (
            seeded is None or best_budget >= TARGET_FACTOR * seeded
        )
        seeds = sorted({r["seed"] for r in of["per_layer_seeded"]})
        wins = 0
        for seed in seeds:
            reference = next(r for r in of["per_layer_seeded"] if r["seed"] == seed)
            budget_hv = max(r["hypervolume"] for m in BUDGET_METHODS for r in of[m]
                            if r["seed"] == seed)  # fmt: skip
            wins += budget_hv > reference["hypervolume"]
        hv_ok = wins > len(seeds) / 2
        result[data] = {
            "per_layer_seeded_compression": seeded,
            "budget_compression": budget,
            "compression_target": f">= {TARGET_FACTOR}x per_layer_seeded",
            "compression": "PASS" if compression_ok else "FAIL",
            "hypervolume_wins": f"{wins} of {len(seeds)} seeds",
            "hypervolume": "PASS" if hv_ok else "FAIL",
        }
    return result


def print_table(rows: list[dict], judged: dict[str, dict[str, Any]]) -> None:
    header = (f"{'data':7} {'method':19} {'seed':>4} {'dense test':>10} {'max c @0.5pt':>12} "
              f"{'hypervol':>8} {'tr-epochs':>9} {'tested':>6} {'s':>5}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        best = r["max_compression_within_tolerance"]
        best_text = f"{best:.2f}x" if best else "–"
        print(f"{r['data']:7} {r['method']:19} {r['seed']:>4} {r['dense_test_acc']:>10.4f} "
              f"{best_text:>12} {r['hypervolume']:>8.4f} {r['trial_epochs']:>9} "
              f"{r['trials_with_test_acc']:>6} {r['seconds']:>5.0f}")  # fmt: skip
    for data, verdict in judged.items():
        print(f"{data}: budget {verdict['budget_compression']} vs per_layer seeded "
              f"{verdict['per_layer_seeded_compression']} -> {verdict['compression']}; "
              f"hypervolume higher in {verdict['hypervolume_wins']} -> "
              f"{verdict['hypervolume']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and epochs")
    parser.add_argument("--seeds", type=int, default=3, help="searcher seeds on digits")
    parser.add_argument("--mnist-seeds", type=int, default=1, help="searcher seeds on MNIST")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--data", nargs="+", default=["digits", "mnist"], choices=["digits", "mnist"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/search_quality.json")
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR, help="MNIST idx files")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tucker-sweep-quality-") as folder:
        workdir = Path(folder)
        settings = data_sets(workdir, args.quick, args.mnist_dir)
        for data in args.data:
            seeds = args.seeds if data == "digits" else args.mnist_seeds
            for seed in range(seeds):
                for method in args.methods:
                    rows.append(run(method, data, seed, settings[data], workdir))
                    print(json.dumps(rows[-1]), flush=True)
    judged = verdicts(rows)
    print_table(rows, judged)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "search_quality",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "command": " ".join(sys.argv),
        "tolerance": TOLERANCE,
        "hypervolume_reference": HV_REFERENCE,
        "rows": rows,
        "verdicts": judged,
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
