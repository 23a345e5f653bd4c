"""Layer speed: forward+backward time of a dense conv against Tucker convolutions.

What is measured
    One training step of a single layer: forward, then backward of out.sum() (a gradient of
    ones), computing the gradients of the input (it requires grad, as inside a network) and of
    every parameter. Gradients are returned by torch.autograd.grad, not accumulated into .grad,
    so every step does the same work. Methods, all in float32 with a bias:

    - dense          nn.Conv2d;
    - reconstructed  TuckerConv2d, kernel rebuilt from the factors then one dense conv;
    - factorized     TuckerConv2d, 1x1 -> grouped spatial conv (D' filters) -> 1x1 -> 1x1;
    - folded         TuckerConv2d, U_D folded into the core: 1x1 -> dense kh x kw conv -> 1x1;
    - auto           TuckerConv2d choosing one of the three by timing it on first use
                     (lightning_modules.tucker.autotune). The cache is cleared at start; the
                     first call, which does the one-off autotuning, is outside the timed region;
                     the chosen path is read back from autotune.cached_choices();
    - tltorch        tensorly-torch's FactorizedConv.from_conv(conv, factorization="tucker",
                     implementation="factorized").

Ranks
    Channel ranks N' = N*ratio, C' = C*ratio for ratio 1/2, 1/4, 1/8; our spatial rank D' = 3 for
    every layer (the flattened kh*kw mode of a 3x3 kernel has size 9). tltorch decomposes the two
    spatial modes separately (rank tuple (N', C', Rh, Rw)) and its factorized execution folds
    the spatial factors into the core anyway, so it is given rank (N', C', kh, kw): its speed
    depends only on N' and C', and it does the same convolutions as our `folded` path.

Timing
    torch.utils.benchmark.Timer.blocked_autorange (synchronises CUDA), with a fixed number of
    threads. Every method of one layer shape is timed in each of --repeats interleaved rounds
    (the order rotating from round to round, so that a burst of load from other processes hits
    all methods alike); the reported time is the median of all the blocks of all the rounds.
    Parameters come from a fixed seed. FLOPs are multiply-adds of the forward pass per batch
    from lightning_modules.tucker.cost (the `reconstructed` figure includes the kernel rebuild).

Targets (checked at the end, printed as PASS/FAIL; the script exits 0 either way):
    (1) at ranks (N/4, C/4, 3) with 256 channels, auto is at least 3x faster than dense and at
        least as fast as tltorch at the same channel ranks;
    (2) at no benchmarked shape is auto more than 10% slower than the fastest of dense, tltorch,
        reconstructed, factorized and folded.

Usage: python benchmarks/layer_speed.py [--quick] [--out PATH] [--repeats N] [--threads N]
                                        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.benchmark import Timer

# Run as a plain script from a checkout without an installed package: make the repository root
# importable (the directory of this file is what Python puts on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tltorch

from lightning_modules.tucker import (
    IMPLEMENTATIONS,
    ConvGeometry,
    TuckerConv2d,
    TuckerRanks,
    path_flops,
    validate_ranks,
)
from lightning_modules.tucker import autotune as tucker_autotune
from lightning_modules.tucker.cost import dense_flops, reconstruction_flops, tucker_flops

SPATIAL_RANK = 3
FULL_RATIOS = (1 / 2, 1 / 4, 1 / 8)
TUCKER_METHODS = (*IMPLEMENTATIONS, "auto")
METHODS = ("dense", *TUCKER_METHODS, "tltorch")
TARGET_SPEEDUP = 3.0
TARGET_SLACK = 1.10
TARGET_CHANNELS = 256
TARGET_RATIO = 1 / 4
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "layer_speed.json"


@dataclass(frozen=True)
class LayerShape:
    """A square conv with C = N channels, a k x k kernel and hw x hw input maps."""

    channels: int
    kernel: int
    hw: int
    batch: int
    padding: int = 1

    @property
    def label(self) -> str:
        k = self.kernel
        return f"C=N={self.channels} {k}x{k} {self.hw}x{self.hw} b{self.batch}"

    @property
    def geometry(self) -> ConvGeometry:
        c = self.channels
        return ConvGeometry.of(c, c, self.kernel, padding=self.padding)


FULL_SHAPES = (
    LayerShape(channels=256, kernel=3, hw=32, batch=8),
    LayerShape(channels=128, kernel=3, hw=16, batch=8),
    LayerShape(channels=64, kernel=3, hw=16, batch=8),
)
QUICK_SHAPES = (LayerShape(channels=32, kernel=3, hw=8, batch=2),)
QUICK_RATIOS = (1 / 4,)


@dataclass
class Settings:
    device: str
    threads: int
    repeats: int
    min_run_time_s: float
    seed: int
    quick: bool
    dtype: str = "float32"
    spatial_rank: int = SPATIAL_RANK
    tltorch_rank: str = "(N', C', kh, kw): spatial factors folded into the core"
    flops: str = "multiply-adds of the forward pass per batch (lightning_modules.tucker.cost)"
    timing: str = (
        "forward+backward; median_ms: median of blocked_autorange blocks over interleaved "
        "rounds (reported); iqr_ms, min_ms: spread and fastest block"
    )


@dataclass
class ConfigResult:
    """Everything measured for one layer shape at one rank ratio."""

    shape: dict
    ratio: float
    ranks: tuple[int, int, int]
    tltorch_rank: tuple[int, int, int, int]
    median_ms: dict[str, float] = field(default_factory=dict)
    iqr_ms: dict[str, float] = field(default_factory=dict)
    min_ms: dict[str, float] = field(default_factory=dict)
    speedup_over_dense: dict[str, float] = field(default_factory=dict)
    forward_flops: dict[str, int] = field(default_factory=dict)
    flop_ratio_dense_over_tucker: float = 0.0
    auto_choice: str = ""
    fastest_own_path: str = ""
    fastest_overall: str = ""


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not measured in this run
    detail: str


# ---- building the layers --------------------------------------------------------------------


def channel_ranks(shape: LayerShape, ratio: float) -> TuckerRanks:
    rank = max(1, round(shape.channels * ratio))
    return validate_ranks(shape.geometry, (rank, rank, SPATIAL_RANK))


def build_dense(shape: LayerShape, device: torch.device, seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    c = shape.channels
    return nn.Conv2d(c, c, shape.kernel, padding=shape.padding, device=device)


def build_tucker(conv: nn.Conv2d, ranks: TuckerRanks, seed: int) -> dict[str, nn.Module]:
    """One TuckerConv2d per implementation, all holding the same parameters.

    Random initialisation (timings do not depend on the values; HOOI of a 256-channel kernel
    takes tens of seconds on a small CPU)."""
    torch.manual_seed(seed)
    layer = TuckerConv2d.from_conv(conv, ranks, init="random")
    layers = {}
    for name in TUCKER_METHODS:
        layers[name] = copy.deepcopy(layer)
        layers[name].implementation = name
    return layers


def build_tltorch(conv: nn.Conv2d, ranks: TuckerRanks, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    kh, kw = conv.kernel_size
    layer = tltorch.FactorizedConv.from_conv(
        conv,
        rank=(ranks.out_rank, ranks.in_rank, kh, kw),
        factorization="tucker",
        implementation="factorized",
    )
    return layer.to(conv.weight.device)


def tltorch_flops(geometry: ConvGeometry, ranks: TuckerRanks, hw: tuple[int, int]) -> int:
    """1x1 C -> C', dense kh x kw conv C' -> N', 1x1 N' -> N (tltorch's tucker_conv)."""
    n, c, d = geometry.tensor_shape
    ho, wo = geometry.output_hw(hw)
    head = c * ranks.in_rank * hw[0] * hw[1]
    return head + (ranks.out_rank * ranks.in_rank * d + n * ranks.out_rank) * ho * wo


# ---- timing ---------------------------------------------------------------------------------


def make_step(module: nn.Module, x: Tensor) -> Callable[[], None]:
    """Forward and backward of one layer, gradients of input and parameters."""
    inputs = [x, *(p for p in module.parameters() if p.requires_grad)]
    grad_out = torch.ones_like(module(x))

    def step() -> None:
        out = module(x)
        torch.autograd.grad(out, inputs, grad_out)

    return step


def time_steps(steps: dict[str, Callable[[], None]], settings: Settings) -> dict[str, list[float]]:
    """Per-call seconds of every block of every round, by step name."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(settings.repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            timer = Timer(
                stmt="step()", globals={"step": steps[name]}, num_threads=settings.threads
            )
            measurement = timer.blocked_autorange(min_run_time=settings.min_run_time_s)
            times[name].extend(measurement.times)
    return times


def interquartile_range(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


def check_paths_agree(layers: dict[str, nn.Module], x: Tensor) -> None:
    """Our paths compute the same function; refuse to time something that does not."""
    with torch.no_grad():
        outputs = {name: layers[name](x) for name in IMPLEMENTATIONS}
    reference = outputs["reconstructed"]
    scale = reference.abs().max().item() or 1.0
    tolerance = 1e-3 if x.device.type == "cpu" else 2e-2  # CUDA convs may run in TF32
    for name, out in outputs.items():
        error = (out - reference).abs().max().item() / scale
        if error > tolerance:
            raise RuntimeError(f"path {name} disagrees with reconstructed: max rel error {error}")


def new_choice(before: dict, after: dict) -> str:
    added = [choice for key, choice in after.items() if key not in before]
    return added[0] if len(added) == 1 else "?"


def benchmark_shape(
    shape: LayerShape, ratios: Sequence[float], settings: Settings
) -> list[ConfigResult]:
    """Time dense once and every Tucker method at every ratio, interleaved."""
    device = torch.device(settings.device)
    geometry = shape.geometry
    hw = (shape.hw, shape.hw)
    torch.manual_seed(settings.seed)
    x = torch.randn(shape.batch, shape.channels, shape.hw, shape.hw, device=device)
    x.requires_grad_(True)
    conv = build_dense(shape, device, settings.seed)
    steps: dict[str, Callable[[], None]] = {"dense": make_step(conv, x)}
    results = []
    for ratio in ratios:
        ranks = channel_ranks(shape, ratio)
        layers = build_tucker(conv, ranks, settings.seed)
        layers["tltorch"] = build_tltorch(conv, ranks, settings.seed)
        check_paths_agree(layers, x)
        before = tucker_autotune.cached_choices()
        for name, layer in layers.items():
            steps[f"{name}@{ratio}"] = make_step(layer, x)  # auto tunes here, untimed
        kh, kw = geometry.kernel_size
        result = ConfigResult(
            shape=asdict(shape),
            ratio=ratio,
            ranks=tuple(ranks),
            tltorch_rank=(ranks.out_rank, ranks.in_rank, kh, kw),
            auto_choice=new_choice(before, tucker_autotune.cached_choices()),
        )
        result.forward_flops = forward_flops(geometry, ranks, hw, shape.batch)
        result.flop_ratio_dense_over_tucker = dense_flops(geometry, hw) / tucker_flops(
            geometry, ranks, hw
        )
        results.append(result)
    for step in steps.values():  # warm-up: allocator, thread pool, one-off kernel choices
        step()
    choices_before_timing = tucker_autotune.cached_choices()
    times = time_steps(steps, settings)
    if tucker_autotune.cached_choices() != choices_before_timing:
        print("warning: the autotune cache changed during timing", file=sys.stderr)
    for result in results:
        summarise(result, times)
    return results


def forward_flops(
    geometry: ConvGeometry, ranks: TuckerRanks, hw: tuple[int, int], batch: int
) -> dict[str, int]:
    flops = {"dense": batch * dense_flops(geometry, hw)}
    for name in IMPLEMENTATIONS:
        flops[name] = batch * path_flops(geometry, ranks, hw, name)
    flops["reconstructed"] += reconstruction_flops(geometry, ranks)
    flops["tltorch"] = batch * tltorch_flops(geometry, ranks, hw)
    return flops


def summarise(result: ConfigResult, times: dict[str, list[float]]) -> None:
    """Fill medians, spreads, speed-ups and winners of one config from the raw times."""
    for method in METHODS:
        key = "dense" if method == "dense" else f"{method}@{result.ratio}"
        result.median_ms[method] = 1e3 * statistics.median(times[key])
        result.iqr_ms[method] = 1e3 * interquartile_range(times[key])
        result.min_ms[method] = 1e3 * min(times[key])
    dense_ms = result.median_ms["dense"]
    result.speedup_over_dense = {m: dense_ms / result.median_ms[m] for m in METHODS}
    if result.auto_choice in result.forward_flops:
        result.forward_flops["auto"] = result.forward_flops[result.auto_choice]
    own = {m: result.median_ms[m] for m in IMPLEMENTATIONS}
    result.fastest_own_path = min(own, key=own.__getitem__)
    others = {m: ms for m, ms in result.median_ms.items() if m != "auto"}
    result.fastest_overall = min(others, key=others.__getitem__)


# ---- report ---------------------------------------------------------------------------------


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(cell).rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def shape_label(result: ConfigResult) -> str:
    return LayerShape(**result.shape).label


def ranks_label(result: ConfigResult) -> str:
    n, c, d = result.ranks
    return f"({n},{c},{d})"


def print_tables(results: Sequence[ConfigResult]) -> None:
    header = ["shape", "ranks", *(f"{m} ms" for m in METHODS)]
    rows = [
        [shape_label(r), ranks_label(r), *(f"{r.median_ms[m]:.2f}" for m in METHODS)]
        for r in results
    ]
    print("\nforward+backward, median ms (lower is better)")
    print(format_table(header, rows))
    speedup_methods = METHODS[1:]
    header = [
        "shape",
        "ranks",
        *(f"{m} x" for m in speedup_methods),
        "FLOPs dense/Tucker",
        "auto chose",
        "fastest other",
        "auto/fastest",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                shape_label(r),
                ranks_label(r),
                *(f"{r.speedup_over_dense[m]:.2f}" for m in speedup_methods),
                f"{r.flop_ratio_dense_over_tucker:.1f}",
                r.auto_choice,
                r.fastest_overall,
                f"{r.median_ms['auto'] / r.median_ms[r.fastest_overall]:.3f}",
            ]
        )
    print("\nspeed-up over dense forward+backward (higher is better); FLOPs: forward only,")
    print("dense / cheaper of factorized and folded (tucker_flops)")
    print(format_table(header, rows))


def check_targets(results: Sequence[ConfigResult]) -> list[Check]:
    checks = []
    target = [
        r
        for r in results
        if r.shape["channels"] == TARGET_CHANNELS and abs(r.ratio - TARGET_RATIO) < 1e-9
    ]
    if not target:
        checks.append(Check("(1a) auto >= 3x dense at (N/4, C/4, 3), 256 ch", None, "not run"))
        checks.append(Check("(1b) auto <= tltorch at (N/4, C/4, 3), 256 ch", None, "not run"))
    for r in target:
        label = f"{shape_label(r)} ranks {ranks_label(r)}"
        speedup = r.speedup_over_dense["auto"]
        checks.append(
            Check(
                f"(1a) auto >= {TARGET_SPEEDUP:g}x faster than dense, {label}",
                speedup >= TARGET_SPEEDUP,
                f"dense {r.median_ms['dense']:.2f} ms / auto {r.median_ms['auto']:.2f} ms "
                f"= {speedup:.2f}x",
            )
        )
        ratio = r.median_ms["tltorch"] / r.median_ms["auto"]
        checks.append(
            Check(
                f"(1b) auto at least as fast as tltorch, {label}",
                r.median_ms["auto"] <= r.median_ms["tltorch"],
                f"tltorch {r.median_ms['tltorch']:.2f} ms / auto {r.median_ms['auto']:.2f} ms "
                f"= {ratio:.3f}",
            )
        )
    for r in results:
        label = f"{shape_label(r)} ranks {ranks_label(r)}"
        best = r.median_ms[r.fastest_overall]
        slowdown = r.median_ms["auto"] / best
        checks.append(
            Check(
                f"(2) auto within {TARGET_SLACK - 1:.0%} of the fastest, {label}",
                slowdown <= TARGET_SLACK,
                f"auto ({r.auto_choice}) {r.median_ms['auto']:.2f} ms vs fastest "
                f"{r.fastest_overall} {best:.2f} ms: auto/fastest = {slowdown:.3f}",
            )
        )
    return checks


def print_checks(checks: Sequence[Check]) -> None:
    print("\ntargets")
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[check.passed]
        print(f"  {verdict}  {check.name}: {check.detail}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: str) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "tltorch": getattr(tltorch, "__version__", "unknown"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return info


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ---- entry point ----------------------------------------------------------------------------


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one small shape, one round")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=available_cores(), help="torch threads")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings(
        device=args.device,
        threads=args.threads,
        repeats=args.repeats,
        min_run_time_s=0.02 if args.quick else 0.25,
        seed=args.seed,
        quick=args.quick,
    )
    shapes, ratios = (QUICK_SHAPES, QUICK_RATIOS) if args.quick else (FULL_SHAPES, FULL_RATIOS)
    machine = machine_info(args.device)
    print(
        f"layer speed: device {args.device} ({machine.get('gpu', machine['cpu'])}), "
        f"torch {torch.__version__}, {args.threads} threads, {args.repeats} rounds"
    )
    print(
        f"Tucker ranks (N*r, C*r, {SPATIAL_RANK}) for r in "
        f"{', '.join(f'1/{round(1 / r)}' for r in ratios)}; tltorch rank (N', C', kh, kw) "
        "(its spatial factors fold into the core, so only N', C' matter)"
    )
    load_before = load_average()
    if load_before is not None and load_before[0] > 0.25 * available_cores():
        print(
            f"warning: load average {load_before[0]} on {available_cores()} cores before the "
            "run: other processes are busy, timings may be noisy"
        )
    started = time.perf_counter()
    tucker_autotune.clear_cache()
    results: list[ConfigResult] = []
    for shape in shapes:
        print(f"  timing {shape.label} ...", flush=True)
        results.extend(benchmark_shape(shape, ratios, settings))
    elapsed = time.perf_counter() - started
    print_tables(results)
    checks = check_targets(results)
    print_checks(checks)
    report = {
        "machine": machine,
        "settings": asdict(settings),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "elapsed_s": round(elapsed, 1),
        "results": [asdict(r) for r in results],
        "checks": [asdict(c) for c in checks],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
