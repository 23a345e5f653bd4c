"""Every torchvision classification model through decompose and the inference form: to run on a
machine where torchvision loads (a CUDA torch with its own torchvision, say).

What is checked, per model
    Built as a sweep builds it (lightning_modules.nets.build_model, "torchvision:NAME", random
    weights from seed 0, 10 classes, eval mode), on --batch random 3x64x64 images (--size):
    1. full ranks: every decomposable conv but the input one (groups=1, zero padding; as a
       sweep's default plans) decomposed by HOOI at full ranks, which is exact up to
       round-off, then turned into its inference form (lightning_modules.inference_form,
       each layer dense, folded or factorized, whichever ran fastest here). Its output must
       equal the dense model's: max |form - dense| <= --tolerance x max |dense|;
    2. a ratio plan (uniform ratio --ratio, default 0.5, HOOI): decomposed, inference form,
       run; the parameter and FLOP ratios (counted: compressed / dense) and the latency ratio
       (measured: inference form / dense, medians of --runs calls side by side after --warmup,
       lightning_modules.inference.time_side_by_side).
    A model with no decomposable conv past the input one (vision transformers, Swin) gets a
    row "not decomposable"; one that fails at any step gets a row "failed" naming the step
    and the error; one above --max-params is not built ("skipped"). Nothing crashes the run.
    TF32 is off on CUDA: a TF32 conv differs from fp32 by more than the tolerance.

The models
    torchvision.models.list_models(module=torchvision.models): the classification models,
    not the detection, segmentation, video or quantized ones. --models picks some of them.
    --timm NAMES runs those timm models instead ("timm:NAME"; --timm alone: a few common CNNs).

Output
    A table on stdout and benchmarks/results/torchvision_models.json (timm_models.json with
    --timm; --out elsewhere). Where torchvision (with --timm, timm) does not load, one line
    "torchvision does not load here: <reason>" and exit status 0, writing nothing: this
    script's results come from machines where it does.

Usage: python benchmarks/torchvision_models.py [--models a,b] [--timm [a,b]] [--device cpu|cuda]
           [--size 64] [--batch 2] [--ratio 0.5] [--max-params 2e8] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from lightning_modules.inference import inference_form, time_side_by_side
from lightning_modules.nets import build_model, decompose, model_cost, skipped_convs, uniform_plan

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = 10
DEFAULT_TIMM = (
    "resnet50", "resnet18d", "efficientnet_b0", "mobilenetv3_large_100", "convnext_tiny",
    "regnety_016", "densenet121", "vit_small_patch16_224",
)  # fmt: skip


@dataclass
class Row:
    model: str
    source: str  # torchvision or timm
    # ok; mismatch (full ranks differ from dense); not decomposable; failed; skipped
    status: str = "ok"
    reason: str = ""
    params: int | None = None
    decomposable: int | None = None  # convs past the input one that can be Tucker layers
    skipped_convs: int | None = None  # grouped or depthwise: they stay dense
    full_rank_error: float | None = None  # max |form - dense| / max |dense|
    full_rank_forms: dict[str, int] = field(default_factory=dict)
    ratio: float | None = None
    params_ratio: float | None = None  # compressed / dense, counted
    flops_ratio: float | None = None  # compressed / dense, counted
    dense_ms: float | None = None
    form_ms: float | None = None
    latency_ratio: float | None = None  # form / dense, measured
    ratio_forms: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def form_counts(form: nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for chosen in getattr(form, "tucker_forms", {}).values():
        counts[chosen] = counts.get(chosen, 0) + 1
    return counts


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def run(model: nn.Module, images: Tensor) -> Tensor:
    with torch.inference_mode():
        return model(images)


def measure(spec: str, args: argparse.Namespace) -> Row:
    """One model's row: every step in order, the first failure named."""
    source, _, name = spec.partition(":")
    row = Row(name, source, ratio=args.ratio)
    started = time.perf_counter()
    step = "build"
    try:
        torch.manual_seed(0)
        dense = build_model(spec, 3, CLASSES).eval()
        row.params = sum(p.numel() for p in dense.parameters())
        if args.max_params and row.params > args.max_params:
            row.status, row.reason = "skipped", f"{row.params / 1e6:.0f}M parameters > --max-params"
            return row
        full_plan = uniform_plan(dense, "full")
        row.decomposable, row.skipped_convs = len(full_plan), len(skipped_convs(dense))
        if not full_plan:
            row.status = "not decomposable"
            row.reason = "no conv past the input one has groups=1 and zero padding" + (
                f" ({row.skipped_convs} grouped or depthwise)" if row.skipped_convs else ""
            )
            return row
        dense = dense.to(args.device)
        generator = torch.Generator().manual_seed(1)
        images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
        images = images.to(args.device)
        step = "dense forward"
        expected = run(dense, images)

        step = "full ranks: decompose"
        full = copy.deepcopy(dense)
        decompose(full, full_plan, init="hooi")
        step = "full ranks: inference form"
        form = inference_form(full, images)
        row.full_rank_forms = form_counts(form)
        difference = (run(form, images) - expected).abs().max().item()
        row.full_rank_error = difference / max(expected.abs().max().item(), 1e-12)
        if not row.full_rank_error <= args.tolerance:  # NaN fails too
            row.status = "mismatch"
            row.reason = f"full ranks differ from dense by {row.full_rank_error:.1e} (relative)"
        del full, form

        step = f"ratio {args.ratio:g}: decompose"
        tucker = copy.deepcopy(dense)
        decompose(tucker, uniform_plan(tucker, args.ratio), init="hooi")
        cost = model_cost(tucker, (3, args.size, args.size))
        row.params_ratio = cost.params / cost.dense_params
        row.flops_ratio = cost.flops / cost.dense_flops
        step = f"ratio {args.ratio:g}: inference form"
        form = inference_form(tucker, images)
        row.ratio_forms = form_counts(form)
        step = f"ratio {args.ratio:g}: run"
        if not torch.isfinite(run(form, images)).all():
            raise ValueError("non-finite outputs")
        calls: dict[str, Callable[[], Tensor]] = {
            "dense": lambda: run(dense, images), "form": lambda: run(form, images),
        }  # fmt: skip
        seconds = time_side_by_side(calls, args.device, args.runs, args.warmup)
        row.dense_ms, row.form_ms = 1000 * seconds["dense"], 1000 * seconds["form"]
        row.latency_ratio = seconds["form"] / seconds["dense"]
    except Exception as error:  # a row saying why, never a crash of the whole run
        row.status, row.reason = "failed", f"{step}: {first_line(error)}"
    finally:
        row.seconds = round(time.perf_counter() - started, 2)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return row


# ---- output -------------------------------------------------------------------------------


def number(value: float | None, text: str) -> str:
    return "-" if value is None else text.format(value)


def forms_text(forms: dict[str, int]) -> str:
    return ", ".join(f"{form} {count}" for form, count in sorted(forms.items())) or "-"


def format_table(rows: Sequence[Row]) -> str:
    header = ["model", "status", "params", "convs", "full-rank err", "params x", "FLOPs x",
              "dense ms", "form ms", "latency x", "forms", "why"]  # fmt: skip
    cells = [[r.model, r.status, number(r.params and r.params / 1e6, "{:.1f}M"),
              "-" if r.decomposable is None else f"{r.decomposable}+{r.skipped_convs}",
              number(r.full_rank_error, "{:.1e}"), number(r.params_ratio, "{:.2f}"),
              number(r.flops_ratio, "{:.2f}"), number(r.dense_ms, "{:.2f}"),
              number(r.form_ms, "{:.2f}"), number(r.latency_ratio, "{:.2f}"),
              forms_text(r.ratio_forms), r.reason] for r in rows]  # fmt: skip
    widths = [max(len(str(c)) for c in column) for column in zip(header, *cells, strict=True)]
    lines = [header, ["-" * w for w in widths], *cells]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


def summary(rows: Sequence[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


# ---- entry point --------------------------------------------------------------------------


def loads(package: str) -> str | None:
    """Why `package` does not import here (one line), or None when it does."""
    try:
        __import__(package)
    except Exception as error:  # missing, or a build for another torch (RuntimeError, OSError)
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__
    return None


def model_specs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    if args.timm is not None:
        return [f"timm:{name}" for name in args.timm.split(",") if name]
    import torchvision

    known = sorted(torchvision.models.list_models(module=torchvision.models))
    wanted = [name for name in args.models.split(",") if name] or known
    if unknown := sorted(set(wanted) - set(known)):
        parser.error(f"not torchvision classification models: {', '.join(unknown)}")
    return [f"torchvision:{name}" for name in wanted]


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="", help="torchvision models (comma-separated)")
    parser.add_argument("--timm", nargs="?", const=",".join(DEFAULT_TIMM), default=None,
                        help="timm models instead (comma-separated; alone: some CNNs)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda where available")  # fmt: skip
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--ratio", type=float, default=0.5, help="the ratio plan's rank ratio")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="full ranks: max |form - dense| / max |dense|")  # fmt: skip
    parser.add_argument("--max-params", type=float, default=2e8,
                        help="models with more parameters are skipped (0: none)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=None, help="timed rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="few timing rounds (a smoke run)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.runs = args.runs or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    stem = "timm_models" if args.timm is not None else "torchvision_models"
    args.out = args.out or RESULTS / f"{stem}.json"
    return args, parser


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = parse_args(argv)
    package = "timm" if args.timm is not None else "torchvision"
    reason = loads(package)
    if reason is not None:
        print(f"{package} does not load here: {reason}")
        return 0  # documented: nothing to measure on this machine, which is not a failure
    if args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: CUDA is not available here")
        # TF32 convs and matmuls differ from fp32 by ~1e-3: the full-rank check needs fp32.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    specs = model_specs(args, parser)
    started = time.perf_counter()
    rows = []
    for index, spec in enumerate(specs, 1):
        row = measure(spec, args)
        rows.append(row)
        print(f"[{index}/{len(specs)}] {row.model}: {row.status} ({row.seconds:.1f} s)"
              + (f" {row.reason}" if row.reason else ""), file=sys.stderr, flush=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    print(format_table(rows))
    counts = summary(rows)
    print("\n" + ", ".join(f"{count} {status}" for status, count in counts.items()))
    machine = {"torch": torch.__version__, "python": platform.python_version(),
               "platform": platform.platform(), "device": args.device}  # fmt: skip
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
    module = sys.modules[package]
    machine[package] = getattr(module, "__version__", "?")
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    settings.update(out=str(args.out), weights="random initialisation (seed 0), untrained",
                    classes=CLASSES)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine, "settings": settings, "elapsed_s": round(elapsed, 1),
        "summary": counts, "rows": [asdict(row) for row in rows],
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
