"""How much ASHA and seeding save, and what a trial costs beyond its training.

    python benchmarks/sweep_efficiency.py [--quick] [--out PATH]

Runs real sweeps (local Ray, Lightning trials, a throwaway MLflow SQLite store) of the bundled
digits config, changing one thing at a time:

1. ASHA vs no early stopping: the same trials (same searcher seed, so the same sampled rank
   plans and learning rates) with `scheduler.name: asha` and `none`. Reported: trial-epochs
   run (from the trial runs' `epochs_run` in MLflow), wall time of the trials, best
   validation accuracy found. Targets: ASHA needs >= 3x fewer trial-epochs and finds a best
   accuracy within 0.5 points of the full run.
2. Seeded vs unseeded rank space at equal budget (same num_samples, both with ASHA): space
   size, best accuracy, and the compression of the best trial.
3. Per-trial overhead of Ray + Lightning: sweeps of trials that train one epoch on 64 images
   with a tiny model, one trial at a time, for two sweep sizes; the slope of wall time
   against the number of trials is what one more trial costs. Target: under 2 s.

Prints a table and writes JSON (default benchmarks/results/sweep_efficiency.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

from sweep.config import SweepConfig, build_config
from sweep.tuning.launch import launch_sweep

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "configs" / "digits.yaml"


def sweep_config(workdir: Path, name: str, **overrides: Any) -> SweepConfig:
    """The bundled digits sweep, with its store and results in `workdir`."""
    settings = {
        "name": name,
        "tracking.uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "tracking.experiment": "benchmark",
        "cluster.storage_path": str(workdir / "ray_results"),
        **overrides,
    }
    return build_config(SweepConfig, DIGITS, settings)


def trial_figures(config: SweepConfig, parent_run_id: str) -> dict[str, Any]:
    """Trial-epochs, trial wall time and best trial, from what the sweep recorded in MLflow."""
    client = MlflowClient(tracking_uri=config.tracking.resolved_uri())
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}' AND tags.`tucker_sweep.kind` = 'trial'"
        ),
    )
    best = max(runs, key=lambda run: run.data.metrics.get("best_val_acc", -1.0))
    start = min(run.info.start_time for run in runs)
    end = max(run.info.end_time for run in runs)
    return {
        "trials": len(runs),
        "trial_epochs": int(sum(run.data.metrics["epochs_run"] for run in runs)),
        "stopped_early": int(sum(run.data.metrics["stopped_early"] for run in runs)),
        "trials_wall_s": (end - start) / 1000,
        "best_val_acc": best.data.metrics["best_val_acc"],
        "best_compression": best.data.metrics["compression"],
        "best_params": {k: v for k, v in best.data.params.items() if k.startswith("ranks/")},
    }


def run_sweep(config: SweepConfig) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = launch_sweep(config)
    figures = trial_figures(config, outcome.parent_run_id)
    figures.update(
        total_wall_s=time.perf_counter() - started,
        space_size=outcome.space_size,
        unseeded_space_size=outcome.unseeded_space_size,
    )
    return figures


def write_tiny_npz(path: Path) -> Path:
    """64 random 8x8 grayscale images in 2 classes: a trial that trains on this does almost
    nothing."""
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((64, 8, 8), dtype=np.float32), y=np.arange(64) % 2)
    return path


def overhead(workdir: Path, sizes: tuple[int, int]) -> dict[str, Any]:
    """Seconds one more (near-empty) trial adds to a sweep run one trial at a time."""
    data = write_tiny_npz(workdir / "tiny.npz")
    walls = {}
    for trials in sizes:
        config = sweep_config(
            workdir,
            f"overhead-{trials}",
            **{
                "data": {"name": "npz", "options": {"path": str(data)}},
                "model.options": {"width": 4},
                "decomposition.mode": "per_layer",
                "decomposition.seed": False,
                "decomposition.init": ["random"],
                "search.num_samples": trials,
                "search.max_concurrent_trials": 1,
                "scheduler.name": "none",
                "scheduler.max_t": 1,
                "stopping.max_epochs": 1,
            },
        )
        walls[trials] = run_sweep(config)["trials_wall_s"]
    small, large = sizes
    return {
        "trials": list(sizes),
        "trials_wall_s": [walls[small], walls[large]],
        "seconds_per_trial": (walls[large] - walls[small]) / (large - small),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (a smoke run)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/sweep_efficiency.json"
    )
    args = parser.parse_args()
    samples = 6 if args.quick else build_config(SweepConfig, DIGITS).search.num_samples
    sizes = (2, 4) if args.quick else (4, 12)
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "num_samples": samples,
    }
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as folder:
        workdir = Path(folder)
        os.chdir(workdir)  # each sweep writes its report to ./reports/<name>
        # per_layer mode, the one seeding narrows (search_quality.py compares the modes).
        common = {"search.num_samples": samples, "decomposition.mode": "per_layer"}
        results["asha_seeded"] = run_sweep(sweep_config(workdir, "asha-seeded", **common))
        results["full_seeded"] = run_sweep(
            sweep_config(workdir, "full-seeded", **common, **{"scheduler.name": "none"})
        )
        results["asha_unseeded"] = run_sweep(
            sweep_config(workdir, "asha-unseeded", **common, **{"decomposition.seed": False})
        )
        results["overhead"] = overhead(workdir, sizes)

    asha, full = results["asha_seeded"], results["full_seeded"]
    saving = full["trial_epochs"] / asha["trial_epochs"]
    gap = 100 * (full["best_val_acc"] - asha["best_val_acc"])
    per_trial = results["overhead"]["seconds_per_trial"]
    results["targets"] = {
        "asha_trial_epoch_saving": saving,
        "asha_saving_at_least_3x": saving >= 3,
        "best_acc_gap_points": gap,
        "best_acc_within_half_point": gap <= 0.5,
        "overhead_seconds_per_trial": per_trial,
        "overhead_under_2s": per_trial < 2,
    }
    print(f"\n{'sweep':<16}{'trials':>7}{'trial-epochs':>14}{'stopped':>9}{'trials wall s':>15}"
          f"{'best val_acc':>14}{'best compr.':>13}{'rank space':>16}")  # fmt: skip
    for name in ("asha_seeded", "full_seeded", "asha_unseeded"):
        row = results[name]
        space = row["space_size"] if name != "asha_unseeded" else row["unseeded_space_size"]
        print(f"{name:<16}{row['trials']:>7}{row['trial_epochs']:>14}{row['stopped_early']:>9}"
              f"{row['trials_wall_s']:>15.1f}{row['best_val_acc']:>14.4f}"
              f"{row['best_compression']:>12.1f}x{space:>16,}")  # fmt: skip
    ovh = results["overhead"]
    print(f"\nper-trial overhead: {ovh['trials']} near-empty trials one at a time took "
          f"{ovh['trials_wall_s'][0]:.1f} s / {ovh['trials_wall_s'][1]:.1f} s -> "
          f"{per_trial:.2f} s per trial")  # fmt: skip
    print(f"ASHA saving {saving:.2f}x trial-epochs (target >= 3x): "
          f"{'PASS' if saving >= 3 else 'FAIL'}")  # fmt: skip
    print(f"best accuracy gap {gap:+.2f} points (target <= 0.5): "
          f"{'PASS' if gap <= 0.5 else 'FAIL'}")  # fmt: skip
    print(f"per-trial overhead {per_trial:.2f} s (target < 2 s): "
          f"{'PASS' if per_trial < 2 else 'FAIL'}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
