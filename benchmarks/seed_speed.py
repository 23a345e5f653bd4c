"""How long seeding takes on ImageNet-size networks, and how closely the spectra's error bound,
which now scores the seed's candidates, ranks them as the HOOI error it replaced did.

    python benchmarks/seed_speed.py [--quick] [--parts scoring,ranking,seed] [--repeats 3]
                                    [--before PATH] [--before-repeats 1] [--out PATH]

ResNet-18 and ResNet-50 layer shapes (benchmarks/resnet_shapes.py), the sweep's default energy
thresholds (0.5 ... 0.9), two kinds of weights: `init` (random, flat spectra: near-full ranks,
HOOI's worst case) and `decaying` (mode spectra falling as i^-0.5, as trained ones do).

scoring  seconds to score every analysed conv's candidates, at 3x32x32.
           new  candidate_ranks as the seed runs it: spectra, error bound, layers on threads
                (and on one thread, for the threads' share).
           old  what candidates.py did before: the spectra from SVDs of the wide unfoldings,
                then one HOOI per candidate, one layer after another. Timed on one layer of each
                distinct kernel shape and multiplied by the number of layers of that shape (a
                full run takes minutes; it assumes layers of one shape and weights cost alike).
           plan the HOOI a trial now runs instead: one per layer, of the middle candidate,
                extrapolated the same way.
ranking  ResNet-18 shapes, decaying weights: per layer, Spearman's rho between the bound and
         the HOOI error over the seed's candidates, and over 8 random feasible triples (not
         nested, as the candidates of one layer are); and HOOI error / bound over all of them.
seed     `tucker-sweep seed` end to end on a ResNet-50 at 3x224x224: model.checkpoint with
         decaying spectra, an .npz of 48 random images (4 classes), a fresh MLflow SQLite store
         per run. Wall time per run (median of --repeats), for this checkout and, with --before,
         for another (a `git worktree add /tmp/seed-before HEAD` of the unchanged code), and
         whether both seeds hold the same candidate triples. Also this checkout with
         `deploy.batch_sizes: [1]`: the same seed without the dense model's timing at batch 64
         (seconds a forward on one thread), to show what that measurement costs.

--parts runs some parts only; the others are kept from the --out file if it has them.

Timings are wall-clock on whatever else the machine runs: the JSON records the load average.
Prints tables and writes JSON (default benchmarks/results/seed_speed.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from a checkout
sys.path.insert(0, str(HERE))  # resnet_shapes, as the seed's model factory finds it

from resnet_shapes import resnet18, resnet50, structured_weights  # noqa: E402

from lightning_modules.nets import conv_layers  # noqa: E402
from lightning_modules.ranks import candidate_ranks, error_bound  # noqa: E402
from lightning_modules.ranks.spectra import one_thread, unfoldings  # noqa: E402
from lightning_modules.tucker import hooi, make_feasible  # noqa: E402
from sweep.config import SweepConfig  # noqa: E402

NETS = {"resnet18": resnet18, "resnet50": resnet50}
WEIGHTS = ("init", "decaying")
DECAY = 0.5
THRESHOLDS = tuple(SweepConfig().decomposition.thresholds)
RANDOM_TRIPLES = 8
CLI = "import sys; from sweep.cli import main; sys.argv[0] = 'tucker-sweep'; main()"


def _net(name: str, weights: str, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    model = NETS[name](num_classes=classes)
    return structured_weights(model, DECAY) if weights == "decaying" else model


def _median_seconds(call: Any, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds (all threads) of `call`: on a shared machine the CPU time
    shows the work done where the wall time shows the waiting too."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, started_cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - started_cpu)
    return statistics.median(walls), statistics.median(cpus)


# ---- scoring ------------------------------------------------------------------------------------


def _old_scoring(weight: torch.Tensor, triples: list[tuple[int, int, int]]) -> tuple[float, list]:
    """Seconds of the old analysis of one layer: SVDs of the unfoldings as they are (wide),
    then one HOOI per candidate; and each HOOI's seconds."""
    with one_thread():
        start = time.perf_counter()
        for unfolding in unfoldings(weight):
            torch.linalg.svdvals(unfolding)
        each = []
        for ranks in triples:
            began = time.perf_counter()
            hooi(weight, ranks)
            each.append(time.perf_counter() - began)
        return time.perf_counter() - start, each


def score(name: str, weights: str, repeats: int, shapes_timed: int | None) -> dict[str, Any]:
    model = _net(name, weights)
    analyses = candidate_ranks(model, THRESHOLDS, input_shape=(3, 32, 32))  # also a warm-up
    new, new_cpu = _median_seconds(
        lambda: candidate_ranks(model, THRESHOLDS, input_shape=(3, 32, 32)), repeats
    )
    one, _ = _median_seconds(
        lambda: candidate_ranks(model, THRESHOLDS, input_shape=(3, 32, 32), workers=1), repeats
    )
    by_shape: dict[tuple, list[str]] = {}
    for layer_name, analysis in analyses.items():
        by_shape.setdefault(analysis.shape, []).append(layer_name)
    # The cheapest shapes first, so that a limited run (--quick) still times something.
    order = sorted(by_shape, key=lambda shape: int(np.prod(shape)))
    timed = order if shapes_timed is None else order[:shapes_timed]
    old = plan = 0.0
    for shape in timed:
        first = by_shape[shape][0]
        triples = [tuple(c.ranks) for c in analyses[first].candidates]
        seconds, each = _old_scoring(model.get_submodule(first).weight, triples)
        old += seconds * len(by_shape[shape])
        plan += each[len(each) // 2] * len(by_shape[shape])
    covered = sum(len(by_shape[shape]) for shape in timed)
    return {
        "net": name,
        "weights": weights,
        "input": [3, 32, 32],
        "layers": len(analyses),
        "candidates": sum(len(a.candidates) for a in analyses.values()),
        "distinct_shapes": len(by_shape),
        "old_shapes_timed": len(timed),
        "old_layers_covered": covered,
        "new_s": new,
        "new_cpu_s": new_cpu,
        "new_one_thread_s": one,
        "old_s_extrapolated": old,
        "plan_hooi_s_extrapolated": plan,
        "speedup": old / new if covered == len(analyses) else None,
    }


# ---- ranking ------------------------------------------------------------------------------------


def _random_triples(dims: tuple[int, int, int], count: int, rng: np.random.Generator) -> list:
    """`count` distinct feasible triples, log-uniform per mode (as compression targets are)."""
    found: set = set()
    for _ in range(50 * count):
        raw = [round(np.exp(rng.uniform(0, np.log(dim)))) for dim in dims]
        found.add(tuple(make_feasible(raw, dims)[0]))
        if len(found) == count:
            break
    return sorted(found)


def _rho(bounds: list[float], errors: list[float]) -> float | None:
    if len(bounds) < 3:
        return None
    value = spearmanr(bounds, errors).statistic
    return None if np.isnan(value) else float(value)


def ranking(name: str, weights: str, layers: int | None, seed: int = 0) -> dict[str, Any]:
    model = _net(name, weights)
    analyses = candidate_ranks(model, THRESHOLDS, input_shape=(3, 32, 32))
    geometry = {layer.name: layer.geometry for layer in conv_layers(model)}
    names = list(analyses)
    if layers is not None:  # the smallest layers (HOOI of big ones takes seconds each)
        names = sorted(names, key=lambda n: int(np.prod(analyses[n].shape)))[:layers]
    rng = np.random.default_rng(seed)
    rows, ratios = [], []
    for layer_name in names:
        analysis = analyses[layer_name]
        weight = model.get_submodule(layer_name).weight
        with one_thread():
            candidates = [
                (c.error_bound, hooi(weight, c.ranks).relative_error) for c in analysis.candidates
            ]
            triples = _random_triples(geometry[layer_name].tensor_shape, RANDOM_TRIPLES, rng)
            randoms = [
                (error_bound(analysis.spectra, t), hooi(weight, t).relative_error) for t in triples
            ]
        ratios += [fitted / bound for bound, fitted in candidates + randoms if bound > 0]
        rows.append(
            {
                "layer": layer_name,
                "shape": list(analysis.shape),
                "candidates": len(candidates),
                "rho_candidates": _rho(*map(list, zip(*candidates, strict=True))),
                "rho_random": _rho(*map(list, zip(*randoms, strict=True))),
            }
        )
    summary = {}
    for key in ("rho_candidates", "rho_random"):
        values = [row[key] for row in rows if row[key] is not None]
        summary[key] = {
            "median": statistics.median(values) if values else None,
            "min": min(values, default=None),
            "layers": len(values),
        }
    summary["hooi_over_bound"] = {
        "min": min(ratios),
        "median": statistics.median(ratios),
        "max": max(ratios),
    }
    return {"net": name, "weights": weights, "layers": rows, "summary": summary}


# ---- seed end to end ----------------------------------------------------------------------------


def write_inputs(folder: Path, net: str, size: int, images: int, classes: int) -> None:
    """A checkpoint of `net` with decaying spectra and an .npz of random images, in `folder`."""
    torch.save(_net(net, "decaying", classes).state_dict(), folder / "weights.pt")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((images, 3, size, size)).astype(np.float32)
    np.savez(folder / "data.npz", x=x, y=np.arange(images) % classes)


def write_config(folder: Path, net: str, classes: int, batches: list[int] | None = None) -> Path:
    """The sweep config naming write_inputs' files (and `deploy.batch_sizes`, if given)."""
    config = folder / ("sweep.yaml" if batches is None else f"sweep-b{batches[-1]}.yaml")
    deploy = "" if batches is None else f"deploy: {{batch_sizes: {batches}}}\n"
    config.write_text(
        deploy + "name: seed-speed\n"
        f"data: {{name: npz, options: {{path: {folder / 'data.npz'}}}}}\n"
        "model:\n"
        f'  factory: "resnet_shapes:{net}"\n'
        f"  options: {{num_classes: {classes}}}\n"
        f"  checkpoint: {folder / 'weights.pt'}\n"
        "tracking: {experiment: seed-speed}\n"
    )
    return config


def run_seed(checkout: Path, config: Path, folder: Path) -> dict[str, Any]:
    """One `tucker-sweep seed` of `checkout`'s code, in a process of its own, with a fresh
    MLflow store: its wall time and its candidate triples per layer."""
    out = Path(tempfile.mkdtemp(prefix="seed-", dir=folder))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), str(HERE)])}
    command = [
        sys.executable,
        "-c",
        CLI,
        "seed",
        str(config),
        "--out",
        str(out / "seed"),
        "--tracking-uri",
        f"sqlite:///{out / 'mlflow.db'}",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=checkout, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"seed failed in {checkout}:\n{result.stderr[-3000:]}")
    seed = json.loads((out / "seed" / "seed.json").read_text())
    triples = {
        name: [c["ranks"] for c in layer["candidates"]] for name, layer in seed["layers"].items()
    }
    latency = [line for line in result.stdout.splitlines() if line.startswith("dense latency")]
    return {"seconds": seconds, "triples": triples, "latency_line": latency[0] if latency else None}


def seed_end_to_end(args: argparse.Namespace, repeats: int, folder: Path) -> dict[str, Any]:
    net, size, images, classes = ("resnet18", 32, 24, 2) if args.quick else ("resnet50", 224, 48, 4)
    write_inputs(folder, net, size, images, classes)
    config = write_config(folder, net, classes)
    checkouts = {"after": (ROOT, repeats, config)}
    if not args.quick:  # batch 64 costs seconds a forward only at full size
        checkouts["after_b1_only"] = (ROOT, repeats, write_config(folder, net, classes, [1]))
    if args.before is not None:
        checkouts["before"] = (args.before.resolve(), args.before_repeats, config)
    figures: dict[str, Any] = {"net": net, "input": [3, size, size], "images": images}
    for label, (checkout, count, settings) in checkouts.items():
        runs = []
        for _ in range(count):
            runs.append(run_seed(checkout, settings, folder))
            print(f"seed {label}: {runs[-1]['seconds']:.1f} s", flush=True)
        seconds = [run["seconds"] for run in runs]
        figures[label] = {
            "checkout": str(checkout),
            "runs_s": seconds,
            "median_s": statistics.median(seconds),
            "latency_line": runs[-1]["latency_line"],
            "triples": runs[-1]["triples"],
        }
    if "before" in figures:
        figures["same_candidates"] = figures["before"]["triples"] == figures["after"]["triples"]
    for label in checkouts:
        figures[label]["layers"] = len(figures[label].pop("triples"))
    return figures


# ---- report -------------------------------------------------------------------------------------


def print_tables(document: dict[str, Any]) -> None:
    for row in document.get("scoring", []):
        scope = (
            "all layers"
            if row["old_layers_covered"] == row["layers"]
            else f"{row['old_layers_covered']} of {row['layers']} layers"
        )
        speedup = f"{row['speedup']:.0f}x" if row["speedup"] else "-"
        print(
            f"scoring {row['net']:9} {row['weights']:9} {row['layers']:3} convs "
            f"{row['candidates']:4} candidates: old {row['old_s_extrapolated']:8.1f} s "
            f"({scope}, {row['old_shapes_timed']} shapes timed, extrapolated) | new "
            f"{row['new_s']:5.2f} s ({row['new_cpu_s']:.2f} s CPU; {row['new_one_thread_s']:.2f} "
            "s on one thread) | "
            f"{speedup} | a trial's HOOI init {row['plan_hooi_s_extrapolated']:.1f} s"
        )
    for block in document.get("ranking", []):
        summary = block["summary"]
        cand, rand, ratio = (
            summary[k] for k in ("rho_candidates", "rho_random", "hooi_over_bound")
        )
        print(
            f"ranking {block['net']} {block['weights']}: Spearman bound vs HOOI, per layer, "
            f"candidates median {cand['median']} (min {cand['min']}, {cand['layers']} layers), "
            f"random triples median {rand['median']} (min {rand['min']}); HOOI/bound "
            f"{ratio['min']:.3f} .. {ratio['max']:.3f} (median {ratio['median']:.3f})"
        )
    seed = document.get("seed")
    if seed:
        for label in ("before", "after", "after_b1_only"):
            if label in seed:
                figure = seed[label]
                runs = ", ".join(f"{s:.1f}" for s in figure["runs_s"])
                print(
                    f"seed {label:6} {seed['net']} {'x'.join(map(str, seed['input']))}: "
                    f"median {figure['median_s']:.1f} s (runs {runs}) | {figure['latency_line']}"
                )
        if "same_candidates" in seed:
            print(f"same candidate triples before and after: {seed['same_candidates']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--parts", default="scoring,ranking,seed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--before-repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "seed_speed.json")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    started = time.perf_counter()
    document: dict[str, Any] = {
        "benchmark": "seed_speed",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "torch_threads": torch.get_num_threads(),
        "thresholds": list(THRESHOLDS),
        "command": " ".join(sys.argv),
    }
    nets = ("resnet18",) if args.quick else tuple(NETS)
    weights = ("decaying",) if args.quick else WEIGHTS
    repeats = 1 if args.quick else args.repeats
    if "scoring" in parts:
        document["scoring"] = [
            score(net, kind, repeats, 2 if args.quick else None) for net in nets for kind in weights
        ]
    if "ranking" in parts:
        document["ranking"] = [ranking("resnet18", "decaying", 3 if args.quick else None)]
    if "seed" in parts:
        with tempfile.TemporaryDirectory(prefix="seed-speed-") as folder:
            document["seed"] = seed_end_to_end(args, repeats, Path(folder))
    document["machine"]["load_average_at_end"] = list(os.getloadavg())
    if args.out.is_file():
        kept = json.loads(args.out.read_text())
        for part in ("scoring", "ranking", "seed"):
            if part not in parts and part in kept:
                document[part] = kept[part]
                earlier = {key: kept.get(key) for key in ("date", "command", "machine")}
                document.setdefault("kept_from", {})[part] = kept.get("kept_from", {}).get(
                    part, earlier
                )
    document["seconds"] = time.perf_counter() - started
    print_tables(document)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
