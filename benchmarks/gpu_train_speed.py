"""GPU training speed: is a Tucker CNN's training step at least as fast as the dense one's?

What is measured
    Model rows: one training step of a whole network (forward, cross-entropy, backward, SGD
    step with momentum), CIFAR-shaped input (3 x 32 x 32, 10 classes) at --batch 128, for
    resnet20 and vgg_small, each dense and Tucker at uniform ratios 0.5 and 0.25 and at an
    allocated plan (the budget allocator at --allocated-compression x fewer conv parameters,
    from the mode spectra of --dense-weights if given, else of the initial weights, which
    gives the non-uniform rank mix of a seeded plan; a trained seed ranks differently). Every
    combination of --precisions (fp32 "32-true"; "bf16-mixed" is torch.autocast bf16, which is
    what Lightning's flag does) and --modes ("eager"; "compiled": nn.Module.compile with
    --compile-mode) and --memory-formats ("nchw", "channels_last"). Tucker layers use
    implementation "auto" (lightning_modules.tucker.autotune), as trials do.

    Layer rows: forward + backward of one conv, for the shapes of issue 12 (and smaller ones
    with --quick), dense against each forced Tucker path and `auto`, with auto's choice.

Timing
    torch.utils.benchmark.Timer.blocked_autorange (it synchronises CUDA) after --warmup steps
    (compilation and autotuning happen there); the median of the blocks is reported.

Targets (GPU only; printed as PASS/FAIL, exit status 0 either way):
    (1) Tucker-0.25 resnet20 step at least 1.0x the dense step in the default setup
        (lightning_modules.execution.ExecutionSetup(): fp32, eager, NCHW) and in the fastest
        setup measured for both;
    (2) at every layer shape and precision, auto within 10% of the fastest forced path.
    The sweep-level target (trial-epochs per GPU-minute) is measured by a sweep, not here.

Usage: python benchmarks/gpu_train_speed.py [--device cuda|cpu] [--quick] [--out PATH]
           [--models resnet20,vgg_small] [--precisions 32-true,bf16-mixed]
           [--modes eager,compiled] [--memory-formats nchw,channels_last] [--batch 128]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.nets import build_model, conv_layers, decompose, model_cost, uniform_plan
from lightning_modules.ranks.allocation import LayerSpectra, allocate_uniform_threshold
from lightning_modules.ranks.spectra import mode_spectra
from lightning_modules.tucker import IMPLEMENTATIONS, TuckerConv2d
from lightning_modules.tucker import autotune as tucker_autotune

DEFAULT_OUT = Path("benchmarks/results/gpu_train_speed.json")
CLASSES = 10
# (channels, spatial size, ranks) of issue 12's layer table, and small ones for --quick.
LAYER_SHAPES = [(256, 32, (64, 64, 3)), (128, 16, (32, 32, 3)), (64, 32, (16, 16, 3)),
                (64, 16, (16, 16, 3)), (512, 8, (64, 64, 3))]  # fmt: skip
QUICK_LAYER_SHAPES = [(32, 8, (8, 8, 3)), (16, 8, (4, 4, 3))]


@dataclass
class ModelRow:
    model: str
    plan: str
    precision: str
    mode: str
    memory_format: str
    params: int
    compression: float
    step_ms: float
    images_per_s: float


@dataclass
class LayerRow:
    shape: str
    precision: str
    method: str  # dense, a forced path, or auto
    step_ms: float
    auto_choice: str | None = None


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def median_ms(step: Callable[[], None], warmup: int, min_run_time: float) -> float:
    for _ in range(warmup):
        step()
    measurement = Timer("step()", globals={"step": step}).blocked_autorange(
        min_run_time=min_run_time
    )
    return measurement.median * 1000.0


def allocated_plan(model: nn.Module, compression: float) -> dict[str, tuple[int, int, int]]:
    """The uniform-threshold allocation (sweep's default budget allocator) at `compression`."""
    layers = [
        LayerSpectra(
            layer.name,
            layer.geometry,
            mode_spectra(model.get_submodule(layer.name).weight.detach().cpu()),
        )
        for layer in conv_layers(model)
        if not layer.is_input_layer
    ]
    return dict(allocate_uniform_threshold(layers, compression).ranks)


def build_net(name: str, plan: str, args: argparse.Namespace, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, 3, CLASSES)
    if args.dense_weights:
        model.load_state_dict(torch.load(args.dense_weights, weights_only=True))
    if plan.startswith("ratio "):
        decompose(model, uniform_plan(model, float(plan.split()[1])), init="hooi")
    elif plan.startswith("allocated"):
        decompose(model, allocated_plan(model, args.allocated_compression), init="hooi")
    return model.to(device)


def training_step(
    model: nn.Module, images: Tensor, labels: Tensor, precision: str
) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(precision, images.device):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return step


def model_rows(args: argparse.Namespace, device: torch.device) -> Iterator[ModelRow]:
    size = 16 if args.quick else 32
    plans = ["dense", "ratio 0.5", "ratio 0.25", f"allocated {args.allocated_compression:g}x"]
    for name in args.models:
        for plan in plans:
            for precision in args.precisions:
                for mode in args.modes:
                    for memory_format in args.memory_formats:
                        yield measure_model(
                            name, plan, precision, mode, memory_format, size, args, device
                        )


def measure_model(
    name: str,
    plan: str,
    precision: str,
    mode: str,
    memory_format: str,
    size: int,
    args: argparse.Namespace,
    device: torch.device,
) -> ModelRow:
    tucker_autotune.clear_cache()
    model = build_net(name, plan, args, device)
    cost = model_cost(model, (3, size, size))
    images = torch.randn(args.batch, 3, size, size, device=device)
    labels = torch.randint(0, CLASSES, (args.batch,), device=device)
    if memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if mode == "compiled":
        model.compile(mode=None if args.compile_mode == "default" else args.compile_mode)
    step = training_step(model, images, labels, precision)
    ms = median_ms(step, args.warmup, args.min_run_time)
    return ModelRow(name, plan, precision, mode, memory_format, cost.params,
                    cost.compression, ms, args.batch / ms * 1000.0)  # fmt: skip


def layer_rows(args: argparse.Namespace, device: torch.device) -> Iterator[LayerRow]:
    batch = args.batch
    for channels, hw, ranks in QUICK_LAYER_SHAPES if args.quick else LAYER_SHAPES:
        label = f"{channels}ch {hw}x{hw} {ranks}"
        torch.manual_seed(0)
        dense = nn.Conv2d(channels, channels, 3, padding=1).to(device)
        x = torch.randn(batch, channels, hw, hw, device=device, requires_grad=True)
        for precision in args.precisions:
            yield LayerRow(label, precision, "dense", layer_ms(dense, x, precision, args))
            for implementation in (*IMPLEMENTATIONS, "auto"):
                tucker_autotune.clear_cache()
                layer = TuckerConv2d.from_conv(dense, ranks, implementation=implementation)
                ms = layer_ms(layer, x, precision, args)
                choice = None
                if implementation == "auto":
                    choice = next(iter(tucker_autotune.cached_choices().values()), None)
                yield LayerRow(label, precision, implementation, ms, choice)


def layer_ms(layer: nn.Module, x: Tensor, precision: str, args: argparse.Namespace) -> float:
    def step() -> None:
        with autocast_for(precision, x.device):
            out = layer(x)
        torch.autograd.grad(out.sum(), [x, *layer.parameters()])

    return median_ms(step, args.warmup, args.min_run_time)


# Not layer_speed's helpers: that script imports tensorly-torch, which a bare GPU box lacks.
def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
                     for line in lines)  # fmt: skip


def machine_info(device: torch.device) -> dict[str, str]:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": str(device)}  # fmt: skip
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def check_targets(models: Sequence[ModelRow], layers: Sequence[LayerRow]) -> list[Check]:
    checks = []
    resnet = [row for row in models if row.model == "resnet20"]
    default = [r for r in resnet if (r.precision, r.mode, r.memory_format) ==
               ("32-true", "eager", "nchw")]  # fmt: skip
    dense = next((r for r in default if r.plan == "dense"), None)
    tucker = next((r for r in default if r.plan == "ratio 0.25"), None)
    if dense and tucker:
        speedup = dense.step_ms / tucker.step_ms
        detail = f"{dense.step_ms:.2f} ms / {tucker.step_ms:.2f} ms = {speedup:.2f}x"
        checks.append(Check("resnet20 Tucker-0.25 >= 1.0x dense, default setup", speedup >= 1.0,
                            detail))  # fmt: skip
    setups = {(r.precision, r.mode, r.memory_format) for r in resnet}

    def fastest(plan: str) -> ModelRow | None:
        return min((r for r in resnet if r.plan == plan), key=lambda r: r.step_ms, default=None)

    best_dense, best_tucker = fastest("dense"), fastest("ratio 0.25")
    if best_dense and best_tucker and len(setups) > 1:
        speedup = best_dense.step_ms / best_tucker.step_ms
        checks.append(Check(
            "resnet20 Tucker-0.25 >= 1.0x dense, each in its fastest setup", speedup >= 1.0,
            f"dense {best_dense.step_ms:.2f} ms ({best_dense.precision}/{best_dense.mode}/"
            f"{best_dense.memory_format}), Tucker {best_tucker.step_ms:.2f} ms "
            f"({best_tucker.precision}/{best_tucker.mode}/{best_tucker.memory_format}) = "
            f"{speedup:.2f}x"))  # fmt: skip
    worst = 0.0
    for key in {(r.shape, r.precision) for r in layers}:
        rows = [r for r in layers if (r.shape, r.precision) == key]
        forced = min(r.step_ms for r in rows if r.method in IMPLEMENTATIONS)
        auto = next(r.step_ms for r in rows if r.method == "auto")
        worst = max(worst, auto / forced - 1.0)
    if layers:
        checks.append(Check("auto within 10% of the fastest forced path", worst <= 0.10,
                            f"worst excess {worst * 100:.1f}%"))  # fmt: skip
    return checks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default_device)
    parser.add_argument("--quick", action="store_true", help="small inputs (a CPU smoke run)")
    parser.add_argument("--batch", type=int, default=None, help="default 128 (8 with --quick)")
    parser.add_argument("--models", default="resnet20,vgg_small")
    parser.add_argument("--precisions", default="32-true,bf16-mixed")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--compile-mode", default="reduce-overhead")
    parser.add_argument("--memory-formats", default="nchw,channels_last")
    parser.add_argument("--allocated-compression", type=float, default=10.0)
    parser.add_argument("--dense-weights", type=Path, help="state_dict of the dense net (3 ch)")
    parser.add_argument("--no-layers", action="store_true", help="skip the layer rows")
    parser.add_argument("--warmup", type=int, default=None, help="default 10 (2 with --quick)")
    parser.add_argument("--min-run-time", type=float, default=None, help="seconds per timing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for key in ("models", "precisions", "modes", "memory_formats"):
        setattr(args, key, [item for item in getattr(args, key).split(",") if item])
    args.batch = args.batch or (8 if args.quick else 128)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 10)
    args.min_run_time = args.min_run_time or (0.05 if args.quick else 0.5)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    models = []
    for row in model_rows(args, device):
        models.append(row)
        print(f"measured {row.model} {row.plan} {row.precision} {row.mode} {row.memory_format}: "
              f"{row.step_ms:.2f} ms", file=sys.stderr, flush=True)  # fmt: skip
    layers = [] if args.no_layers else list(layer_rows(args, device))
    print(format_table(
        ["model", "plan", "precision", "mode", "memory", "params", "compr.", "step ms", "img/s"],
        [[r.model, r.plan, r.precision, r.mode, r.memory_format, f"{r.params:,}",
          f"{r.compression:.2f}x", f"{r.step_ms:.2f}", f"{r.images_per_s:,.0f}"]
         for r in models]))  # fmt: skip
    if layers:
        print(format_table(["layer", "precision", "method", "ms", "auto chose"],
                           [[r.shape, r.precision, r.method, f"{r.step_ms:.3f}",
                             r.auto_choice or ""] for r in layers]))  # fmt: skip
    checks = check_targets(models, layers) if device.type == "cuda" else []
    for check in checks:
        print(f"{'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
    if device.type != "cuda":
        print("targets are GPU figures: not checked on", device.type)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "models": [asdict(r) for r in models],
        "layers": [asdict(r) for r in layers],
        "checks": [asdict(c) for c in checks],
    }, indent=2))  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
