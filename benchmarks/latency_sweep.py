"""Does a latency budget find faster plans than a params budget, at the same accuracy?

    python benchmarks/latency_sweep.py [--quick] [--seed 0] [--out PATH]

Two real sweeps on MNIST (the 10,000 test images of ../shared/data/mnist-t10k, split 70/15/15,
the settings of benchmarks/search_quality.py), the same trial budget and ASHA settings, budget
mode with the uniform allocator, differing only in `budget_metric`:

    params    a compression target of the decomposed convs' parameters per trial
    latency   a measured speed-up target of those convs on this CPU (deploy: cpu, 1 thread),
              priced by the latency table the sweep times with its seed

Each sweep's recommended plan is the report's (val acc within 0.5 points of the dense
reference's; fewest params for the params sweep, highest measured speed-up for the latency
sweep). Both plans are then rebuilt and timed here, in their inference forms, side by side with
the dense network in one process (1 thread, batch 1 and 64, float32), so their speed-ups are
ratios from one run. Their test accuracies judge them against the dense reference's.

Target: the latency sweep's plan is measurably faster than the params sweep's (its speed-up at
batch 1 is higher by more than the spread of repeated timings) while both are within 0.5 points
of dense test accuracy. Printed as PASS/FAIL; JSON to benchmarks/results/latency_sweep.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_quality import MNIST_DIR, TOLERANCE, data_sets  # benchmarks/ is sys.path[0]

from lightning_modules.inference import inference_form, time_modules, torch_threads
from lightning_modules.nets import build_model, decompose
from sweep.config import SweepConfig
from sweep.report.build import build_report
from sweep.report.schema import Criteria
from sweep.tracking.sweep_runs import load_sweep
from sweep.tuning.launch import launch_sweep

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 64)
REPEATS = 5  # timings of each plan, for the spread a difference must exceed


def _config(metric: str, seed: int, settings: dict[str, Any], workdir: Path) -> SweepConfig:
    raw = json.loads(json.dumps(settings))
    raw.update(
        name=f"mnist-{metric}-s{seed}",
        decomposition={"mode": "budget", "allocator": "uniform", "budget_metric": metric},
        tracking={"uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": "latency"},
        cluster={"storage_path": str(workdir / "ray_results")},
        deploy={"device": "cpu", "threads": 1, "batch_sizes": list(BATCHES)},
    )
    raw["search"] = {**raw.get("search", {}), "seed": seed}
    return SweepConfig.model_validate(raw)


def recommended(config: SweepConfig, minimise: str) -> dict[str, Any]:
    client, runs = load_sweep(config.tracking.resolved_uri(), config.name, "latency")
    criteria = Criteria(max_params=None, min_compression=1.0, max_drop=0.5, minimise=minimise)
    report = build_report(client, runs, criteria)
    trial = report.recommended.trial
    dense = report.baseline
    return {
        "sweep": config.name,
        "trial": None if trial is None else trial.trial_name,
        "ranks": None if trial is None else {k: list(v) for k, v in trial.ranks.items()},
        "compression": None if trial is None else trial.compression,
        "val_acc": None if trial is None else trial.best_val_acc,
        "test_acc": None if trial is None else trial.test_acc,
        "logged_speedup": None if trial is None else trial.speedup,
        "dense_test_acc": None if dense is None else dense.test_acc,
        "note": report.recommended.note,
    }


def _network(config: SweepConfig, ranks: dict[str, list[int]] | None) -> torch.nn.Module:
    model = build_model(config.model.spec, 1, 10, **config.model.options)
    if ranks:
        decompose(model, {k: tuple(v) for k, v in ranks.items()}, init="random")
    return model.eval()


def time_plans(configs: dict[str, SweepConfig], plans: dict[str, dict]) -> dict[str, Any]:
    """Both recommended plans and the dense net, inference forms timed side by side."""
    any_config = next(iter(configs.values()))
    dense = _network(any_config, None)
    figures: dict[str, Any] = {}
    with torch_threads(1):
        for batch in BATCHES:
            x = torch.randn(batch, 1, 28, 28)
            modules = {"dense": dense}
            for metric, plan in plans.items():
                if plan["ranks"] is not None:
                    modules[metric] = inference_form(_network(configs[metric], plan["ranks"]), x)
            repeats = [time_modules(modules, x, runs=15) for _ in range(REPEATS)]
            speedups = {
                name: [r["dense"] / r[name] for r in repeats] for name in modules if name != "dense"
            }
            figures[str(batch)] = {
                name: {"median": statistics.median(values), "low": min(values), "high": max(values)}
                for name, values in speedups.items()
            }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and epochs")
    parser.add_argument("--seed", type=int, default=0, help="searcher seed")
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/latency_sweep.json")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tucker-sweep-latency-") as folder:
        workdir = Path(folder)
        settings = data_sets(workdir, args.quick, args.mnist_dir)["mnist"]
        configs = {m: _config(m, args.seed, settings, workdir) for m in ("params", "latency")}
        plans = {}
        for metric, config in configs.items():
            launch_sweep(config)
            plans[metric] = recommended(config, "latency" if metric == "latency" else "params")
            print(json.dumps(plans[metric]), flush=True)
        speed = time_plans(configs, plans)
    verdict = judge(plans, speed)
    print_table(plans, speed, verdict)
    document = {
        "benchmark": "latency_sweep",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
        },
        "timing": {"device": "cpu", "threads": 1, "dtype": "float32", "batches": list(BATCHES)},
        "command": " ".join(sys.argv),
        "seconds": time.perf_counter() - started,
        "plans": plans,
        "speedup": speed,
        "verdict": verdict,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")


def judge(plans: dict[str, dict], speed: dict[str, Any]) -> dict[str, Any]:
    within = {
        metric: plan["test_acc"] is not None and plan["dense_test_acc"] is not None
        and plan["test_acc"] >= plan["dense_test_acc"] - TOLERANCE
        for metric, plan in plans.items()
    }  # fmt: skip
    at_one = speed.get("1", {})
    faster = (
        "latency" in at_one and "params" in at_one
        and at_one["latency"]["low"] > at_one["params"]["high"]
    )  # fmt: skip
    return {
        "within_tolerance": within,
        "latency_plan_faster_at_batch_1": faster,
        "result": "PASS" if faster and all(within.values()) else "FAIL",
    }


def print_table(plans: dict[str, dict], speed: dict[str, Any], verdict: dict[str, Any]) -> None:
    print(f"{'sweep':8} {'trial':24} {'params x':>8} {'val':>7} {'test':>7} {'dense test':>10} "
          + " ".join(f"{'b' + b + ' speed-up':>14}" for b in speed))  # fmt: skip
    for metric, plan in plans.items():
        cells = []
        for batch in speed:
            figure = speed[batch].get(metric)
            cells.append(f"{figure['median']:>13.2f}x" if figure else f"{'-':>14}")
        print(f"{metric:8} {plan['trial']!s:24} {plan['compression'] or 0:>8.2f} "
              f"{plan['val_acc'] or 0:>7.4f} {plan['test_acc'] or 0:>7.4f} "
              f"{plan['dense_test_acc'] or 0:>10.4f} " + " ".join(cells))  # fmt: skip
    print(
        "speed-ups: measured latency ratios against the dense net, CPU, 1 thread, float32, "
        "inference forms, timed side by side in this process"
    )
    print(
        f"{verdict['result']}: latency plan faster at batch 1 (beyond the timing spread): "
        f"{verdict['latency_plan_faster_at_batch_1']}; within 0.5 pt of dense test acc: "
        f"{verdict['within_tolerance']}"
    )


if __name__ == "__main__":
    main()
