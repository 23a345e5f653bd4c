"""Inference speed: is a Tucker network faster than its dense original where it is deployed?

What is measured
    Whole networks, forward pass only (eval mode, no autograd), a Tucker net against the dense
    net it came from, on random inputs, float32:
    - nets: vgg_small on 1x8x8 and 3x32x32, resnet20 and mobilenet_v2_small on 3x32x32, and the
      example's own network (examples/own_model/my_cnn.py, built as its sweep.yaml builds it:
      factory my_cnn:build, 1 channel, width 32, 10 classes) on 1x28x28, the MNIST images its
      train_my_cnn.py writes when MNIST is there (8x8 digits otherwise);
    - plans: HOOI of the dense weights (nets.decompose, init "hooi") at the ranks of the budget
      allocator (ranks.allocation.allocate_uniform_threshold) for 2x, 4x and 8x fewer
      parameters in the decomposed convs (the input conv stays dense, as in a sweep); where the
      allocator's plan is degenerate (misses or overshoots its target, or is rank 1
      everywhere) a uniform ratio plan (nets.uniform_plan) meeting the same target instead:
      each plan's `source` says which. Latency-budget plans (metric "latency": speed-up
      targets 1.5x and 2x, built per setting from a per-layer latency table of that setting)
      where the allocator has that metric; otherwise skipped, with the reason printed;
    - runtimes, the dense and the Tucker net in the same one, side by side:
        eager-form   the inference form (lightning_modules.inference.inference_form): every
                     Tucker layer as plain modules in whichever form ran fastest in this
                     setting (the `forms` column counts them)
        eager-auto   the training-time TuckerConv2d, implementation "auto" (its paths timed
                     on first use, lightning_modules.tucker.autotune)
        torchscript  torch.jit.freeze(torch.jit.trace(...)) of the inference form and of the
                     dense net (freezing folds BN into convs in both)
        onnxruntime  torch.onnx.export of both, run by ONNX Runtime (all graph optimisations,
                     intra_op_num_threads = the setting's threads); skipped without onnxruntime
      TorchScript and ORT run the forms that eager timing chose: nothing is re-chosen for them;
    - settings: CPU with 1 and 2 threads (torch_threads, ORT intra-op threads) at batch 1 and
      32; --device cuda adds the GPU at each batch (skipped when CUDA is not available).
    The weights are random and untrained: speed does not depend on weight values (HOOI of
    random weights has a flat spectrum, which is why a degenerate plan falls back to ratios).

    Training-step rows: one SGD step (forward, cross-entropy, backward, step with momentum) at
    batch 32 on a CPU with 1 thread, resnet20 and vgg_small on 3x32x32 at uniform ratio 0.5:
    dense, TuckerConv2d "auto", and each forced path (`implementation` set on every layer).

Timing
    lightning_modules.inference.time_side_by_side: per setting and runtime, the dense net and
    every plan's net called round-robin in this one process (--warmup rounds, then --runs),
    medians. A speed-up is dense_ms / compressed_ms of one such run: measured. The params and
    FLOP ratios (lightning_modules.nets.model_cost, whole net, dense-equivalent over actual)
    are counts, never speed-ups; they are printed beside the measured speed-up to compare.

Targets (printed as PASS / FAIL / SKIP and in the JSON's "checks"; exit status 0 either way)
    (a) every inference-form plan (eager-form rows) at least 1.0x dense on every net and
        setting: no slack, the slowest figure printed;
    (b) resnet20 3x32x32, CPU, batch 1, 1 thread, params 4x plan: inference form >= 2x dense;
    (c) every latency-budget plan's measured speed-up (eager-form, the setting its latency
        table was measured in) within 10% of its target;
    (d) training step: "auto" within 10% of the fastest forced path, per net.

Usage: python benchmarks/inference_speed.py [--quick] [--out PATH] [--device cpu|cuda]
           [--runs N] [--warmup N] [--nets resnet20,...] [--runtimes eager-form,...]
           [--threads 1,2] [--batches 1,32] [--no-training]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import importlib.util
import io
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The repository, when run from a checkout; and my_cnn, as its sweep finds it (PYTHONPATH).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "own_model"))

from lightning_modules.inference import (
    inference_form,
    time_modules,
    time_side_by_side,
    torch_threads,
)
from lightning_modules.nets import (
    ConvLayer,
    build_model,
    conv_layers,
    decompose,
    input_sizes,
    model_cost,
    uniform_plan,
)
from lightning_modules.ranks import allocation
from lightning_modules.ranks.allocation import Allocation, LayerSpectra
from lightning_modules.ranks.spectra import mode_spectra
from lightning_modules.tucker import IMPLEMENTATIONS, TuckerConv2d, TuckerRanks, ranks_from_spec
from lightning_modules.tucker import autotune as tucker_autotune
from lightning_modules.tucker.cost import dense_param_count, tucker_param_count

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "inference_speed.json"
CLASSES = 10
DTYPE = torch.float32
RUNTIMES = ("eager-form", "eager-auto", "torchscript", "onnxruntime")
PARAMS_TARGETS = (2.0, 4.0, 8.0)
LATENCY_TARGETS = (1.5, 2.0)
TRAIN_RATIO = 0.5
# A plan compressing its convs more than this past its target is an overshoot (a flat spectrum
# makes the allocator's ranks jump), not the plan asked for.
OVERSHOOT = 1.25
TARGET_B_SPEEDUP = 2.0
LATENCY_SLACK = 0.10
AUTO_SLACK = 0.10
# TorchScript's profiling executor optimises a graph over its first few calls: with one warm-up
# round a net of plain dense convs timed 4x slower than the same net traced again (0.42 against
# 1.93 ms); from 5 on both agreed.
TORCHSCRIPT_WARMUP = 5


@dataclass(frozen=True)
class NetSpec:
    """A network to benchmark: a registry name (or a user factory) and one image's shape."""

    name: str
    input_shape: tuple[int, int, int]
    options: Mapping[str, object] = field(default_factory=dict)
    factory: str | None = None  # build_model's "factory:..." name, for a user's own model

    @property
    def shape_label(self) -> str:
        return "x".join(map(str, self.input_shape))

    @property
    def label(self) -> str:
        return f"{self.name} {self.shape_label}"

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        return build_model(self.factory or self.name, self.input_shape[0], CLASSES,
                           **self.options).eval()  # fmt: skip


MY_CNN = NetSpec("my_cnn", (1, 28, 28), {"in_channels": 1, "num_classes": CLASSES, "width": 32},
                 factory="factory:my_cnn:build")  # fmt: skip
FULL_NETS = (
    NetSpec("vgg_small", (1, 8, 8)),
    NetSpec("vgg_small", (3, 32, 32)),
    NetSpec("resnet20", (3, 32, 32)),
    NetSpec("mobilenet_v2_small", (3, 32, 32)),
    MY_CNN,
)
QUICK_NETS = (
    NetSpec("vgg_small", (1, 8, 8), {"width": 8}),
    NetSpec("mobilenet_v2_small", (3, 16, 16), {"width": 8}),
    dataclasses.replace(MY_CNN, input_shape=(1, 8, 8), options={**MY_CNN.options, "width": 8}),
)
TRAIN_NETS = (NetSpec("resnet20", (3, 32, 32)), NetSpec("vgg_small", (3, 32, 32)))
QUICK_TRAIN_NETS = (NetSpec("vgg_small", (3, 16, 16), {"width": 8}),)


@dataclass(frozen=True)
class Plan:
    """Ranks for some convs of a net, the target they were chosen for and how."""

    label: str  # "params 4x", "latency 1.5x"
    metric: str  # the budget: "params" or "latency"
    target: float  # fewer parameters (params) or a speed-up (latency)
    ranks: Mapping[str, TuckerRanks]
    source: str  # "allocated ..." or "ratio ... (why)"
    estimate: float  # the decomposable convs' compression (params) or estimated speed-up
    met: bool  # whether `estimate` reaches `target`
    dense_layers: tuple[str, ...] = ()  # what a latency plan keeps dense on purpose


@dataclass(frozen=True)
class Setting:
    device: str
    threads: int | None  # torch and ORT intra-op threads on a CPU; None on a GPU
    batch: int

    @property
    def label(self) -> str:
        threads = f" {self.threads} thr" if self.threads else ""
        return f"{self.device}{threads} b{self.batch}"


@dataclass
class Row:
    model: str
    input: str
    plan: str
    plan_metric: str  # the budget the plan was chosen under: params or latency
    plan_target: float
    plan_estimate: float  # the plan's convs: params compression, or the latency model's speed-up
    plan_met: bool  # whether plan_estimate reaches plan_target
    plan_source: str
    runtime: str
    device: str
    threads: int | None
    batch: int
    dtype: str
    dense_ms: float
    compressed_ms: float
    speedup: float  # measured: dense_ms / compressed_ms, timed side by side in one run
    params_ratio: float  # count: dense params / compressed params, whole net
    flop_ratio: float  # count: dense / Tucker multiply-adds of the plan, whole net
    form_flop_ratio: float  # count: dense / multiply-adds of the inference form's modules
    forms: dict[str, int]  # form (or auto's path) -> number of Tucker layers that took it
    layer_forms: dict[str, str]  # layer -> form ("?" where auto's choice could not be read)


@dataclass
class TrainRow:
    model: str
    input: str
    plan: str
    method: str  # dense, auto, or a forced path
    device: str
    threads: int
    batch: int
    step_ms: float
    speedup: float  # measured: dense step / this step, side by side in one run
    auto_choices: dict[str, int]


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not measured in this run (SKIP)
    detail: str


@dataclass
class Skip:
    what: str
    reason: str


# ---- plans --------------------------------------------------------------------------------


def decomposable(model: nn.Module) -> list[ConvLayer]:
    """The convs a plan may decompose: every decomposable one but the input conv."""
    return [layer for layer in conv_layers(model) if not layer.is_input_layer]


def layer_spectra(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerSpectra]:
    """What the allocator knows of each decomposable conv (spectra of its weight, as the
    sweep's seed computes them, and its input size)."""
    sizes = input_sizes(model, input_shape, nn.Conv2d)
    return [
        LayerSpectra(layer.name, layer.geometry,
                     mode_spectra(model.get_submodule(layer.name).weight), sizes.get(layer.name))
        for layer in decomposable(model)
    ]  # fmt: skip


def degenerate(result: Allocation) -> str | None:
    """Why an allocation is not the plan asked for, or None when it is."""
    if not result.met:
        return f"missed its target: {result.compression:.2f}x"
    if result.compression > result.target_compression * OVERSHOOT:
        return f"overshot its target: {result.compression:.2f}x"
    if all(tuple(ranks) == (1, 1, 1) for ranks in result.ranks.values()):
        return "rank 1 everywhere"
    return None


def conv_compression(layers: Sequence[ConvLayer], ratio: float) -> float:
    """Dense over Tucker parameters of `layers` at a uniform ratio (no biases: as allocated)."""
    dense = sum(dense_param_count(layer.geometry, bias=False) for layer in layers)
    tucker = sum(
        tucker_param_count(layer.geometry, ranks_from_spec(layer.geometry, ratio), bias=False)
        for layer in layers
    )
    return dense / tucker


def ratio_for(layers: Sequence[ConvLayer], target: float) -> float:
    """The largest uniform ratio whose plan compresses `layers` at least `target` x (bisection:
    rounded ranks make the compression a step function of the ratio)."""
    low, high = 1 / 256, 1.0
    if conv_compression(layers, low) < target:
        return low
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if conv_compression(layers, middle) >= target else (low, middle)
    return low


def params_plan(model: nn.Module, spectra: Sequence[LayerSpectra], target: float) -> Plan:
    label = f"params {target:g}x"
    result = allocation.allocate_uniform_threshold(spectra, target, metric="params")
    problem = degenerate(result)
    if problem is None:
        source = f"allocated (uniform threshold, params): convs {result.compression:.2f}x"
        return Plan(label, "params", target, dict(result.ranks), source, result.compression, True)
    layers = decomposable(model)
    ratio = ratio_for(layers, target)
    compression = conv_compression(layers, ratio)
    source = f"ratio {ratio:.4f}: convs {compression:.2f}x (the allocator's plan {problem})"
    plan = uniform_plan(model, ratio)
    return Plan(label, "params", target, plan, source, compression, compression >= target)


def latency_unavailable() -> str | None:
    """Why latency-budget plans cannot be built with this checkout, or None."""
    if "latency" not in allocation.METRICS:
        return f"the allocator has no 'latency' metric (allocation.METRICS = {allocation.METRICS})"
    if importlib.util.find_spec("lightning_modules.inference.latency_table") is None:
        return "lightning_modules.inference.latency_table is missing"
    return None


def latency_table(setting: Setting) -> Any:
    """An empty latency table of `setting` (each layer is timed on first use)."""
    from lightning_modules.inference.latency_table import LatencyTable, TimingSetup

    dtype = str(DTYPE).removeprefix("torch.")
    return LatencyTable(TimingSetup(setting.device, dtype, setting.threads or 1, setting.batch))


def latency_plan(spectra: Sequence[LayerSpectra], table: Any, target: float) -> Plan:
    """A latency-budget plan priced by `table` (measured in the setting it will run in).
    The allocator's target is a speed-up of the decomposable convs alone; the rows measure
    the whole net, whose other layers (BN, pooling, depthwise convs, the input conv) it
    cannot speed up."""
    layers = [
        dataclasses.replace(layer, latency=table.layer(layer.geometry, layer.input_hw))
        for layer in spectra
    ]
    result = allocation.allocate_uniform_threshold(layers, target, metric="latency")
    dense_layers = tuple(getattr(result, "dense_layers", ()))
    ranks = {name: r for name, r in result.ranks.items() if name not in dense_layers}
    source = (f"allocated (uniform threshold, latency): convs estimated {result.compression:.2f}x"
              f"{'' if result.met else ' (target not met)'}, {len(dense_layers)} of "
              f"{len(layers)} kept dense")  # fmt: skip
    return Plan(f"latency {target:g}x", "latency", target, ranks, source, result.compression,
                result.met, dense_layers)  # fmt: skip


class Templates:
    """The HOOI-decomposed net of each distinct plan, built once and never run: every setting
    runs its own deep copy, so `auto` choices are made afresh in each (and a latency plan that
    comes out the same in two settings is decomposed once)."""

    def __init__(self, dense: nn.Module) -> None:
        self.dense = dense
        self._built: dict[tuple, nn.Module] = {}

    def fresh(self, plan: Plan) -> nn.Module:
        key = tuple(sorted((name, tuple(r)) for name, r in plan.ranks.items()))
        if key not in self._built:
            template = copy.deepcopy(self.dense)
            decompose(template, plan.ranks, init="hooi")
            self._built[key] = template
        return copy.deepcopy(self._built[key])


# ---- runtimes -----------------------------------------------------------------------------


def form_counts(forms: Mapping[str, str]) -> dict[str, int]:
    return dict(sorted(Counter(forms.values()).items()))


def auto_choices(model: nn.Module) -> dict[str, str]:
    """The path `auto` took in each Tucker layer of `model`, read from autotune's process-wide
    cache (keyed by the layer's geometry, its core's shape and the call; cleared before each
    setting, so what it holds is this setting's). "?" where the cache does not say."""
    cache = tucker_autotune.cached_choices()
    choices = {}
    for name, layer in model.named_modules():
        if isinstance(layer, TuckerConv2d):
            mine = (layer.geometry, tuple(layer.core.shape))
            found = {choice for key, choice in cache.items() if tuple(key[:2]) == mine}
            choices[name] = found.pop() if len(found) == 1 else "?"
    return choices


def torchscript(module: nn.Module, example: Tensor) -> torch.jit.ScriptModule:
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(module.eval(), example))


def onnxruntime_missing(device: str) -> str | None:
    """Why ORT rows cannot run on `device`, or None."""
    for package in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed (.venv/bin/pip install onnx onnxruntime onnxscript)"
    import onnxruntime

    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if provider not in onnxruntime.get_available_providers():
        return f"onnxruntime has no {provider} (on a GPU: onnxruntime-gpu)"
    return None


def onnx_model(module: nn.Module, example: Tensor) -> tuple[bytes, str]:
    """The ONNX bytes of `module` traced on `example` (on the CPU), and the exporter used: the
    TorchScript-based one where this torch still has it (it exports the trace the TorchScript
    rows run, and took 2.0 s against torch.export's 2.8 s for resnet20 here), else
    torch.export's."""
    module = copy.deepcopy(module).cpu().eval()
    example = example.cpu()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        try:
            torch.onnx.export(module, (example,), buffer, dynamo=False,
                              input_names=["x"], output_names=["logits"])  # fmt: skip
            return buffer.getvalue(), "torchscript-based"
        except (TypeError, RuntimeError, AttributeError):
            buffer = io.BytesIO()
            program = torch.onnx.export(module, (example,), dynamo=True, verbose=False)
            program.save(buffer)
            return buffer.getvalue(), "dynamo"


def ort_call(model_bytes: bytes, setting: Setting, example: Tensor) -> Callable[[], Any]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = setting.threads or 0  # 0: ORT's default
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    provider = "CUDAExecutionProvider" if setting.device == "cuda" else "CPUExecutionProvider"
    session = onnxruntime.InferenceSession(model_bytes, options, providers=[provider])
    feed = {"x": example.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


class Shared:
    """What nets and settings share. TorchScript modules and ONNX bytes by (net, plan, batch,
    device, forms): another setting whose forms came out the same reuses them (a trace is
    seconds on a busy CPU). Latency tables by setting: a layer shape is timed once."""

    def __init__(self) -> None:
        self._torchscript: dict[tuple, torch.jit.ScriptModule] = {}
        self._onnx: dict[tuple, bytes] = {}
        self._latency_tables: dict[Setting, Any] = {}
        self.onnx_exporters: set[str] = set()

    def latency_table(self, setting: Setting) -> Any:
        if setting not in self._latency_tables:
            self._latency_tables[setting] = latency_table(setting)
        return self._latency_tables[setting]

    def torchscript(self, key: tuple, module: nn.Module, example: Tensor) -> Any:
        if key not in self._torchscript:
            self._torchscript[key] = torchscript(module, example)
        return self._torchscript[key]

    def onnx(self, key: tuple, module: nn.Module, example: Tensor) -> bytes:
        if key not in self._onnx:
            self._onnx[key], exporter = onnx_model(module, example)
            self.onnx_exporters.add(exporter)
        return self._onnx[key]


# ---- measuring ----------------------------------------------------------------------------


@dataclass
class NetRun:
    """What one net's rows share: the dense net (on the CPU), its spectra, its params plans and
    the decomposed templates of every plan."""

    spec: NetSpec
    dense: nn.Module
    spectra: list[LayerSpectra]
    templates: Templates
    params_plans: list[Plan]


@dataclass
class Candidate:
    """A plan's nets in one setting: the Tucker net (auto) and its inference form."""

    plan: Plan
    tucker: nn.Module
    form: nn.Module
    params_ratio: float
    flop_ratio: float
    form_flop_ratio: float


@dataclass
class SettingRun:
    """One net in one setting: the dense net on the device, the example batch, the plans."""

    net: NetRun
    setting: Setting
    dense: nn.Module
    example: Tensor
    entries: list[Candidate] = field(default_factory=list)


def candidate(run: SettingRun, plan: Plan) -> Candidate:
    tucker = run.net.templates.fresh(plan)
    cost = model_cost(tucker, run.net.spec.input_shape)
    tucker = tucker.to(run.example.device).eval()
    form = inference_form(tucker, run.example)
    # The form may run a layer dense, or factorized rather than folded: its own count.
    form_flops = model_cost(form, run.net.spec.input_shape).flops
    return Candidate(plan, tucker, form, cost.compression, cost.flops_reduction,
                     cost.dense_flops / form_flops)  # fmt: skip


def row(run: SettingRun, entry: Candidate, runtime: str, seconds: Mapping[str, float],
        key: str) -> Row:  # fmt: skip
    """The row of `entry` in `runtime`, from a timing holding "dense" and `key`."""
    dense_ms, compressed_ms = 1000 * seconds["dense"], 1000 * seconds[key]
    if runtime == "eager-auto":
        layer_forms = auto_choices(entry.tucker)
    else:
        layer_forms = dict(entry.form.tucker_forms)
    spec, setting, plan = run.net.spec, run.setting, entry.plan
    return Row(spec.name, spec.shape_label, plan.label, plan.metric, plan.target, plan.estimate,
               plan.met, plan.source, runtime, setting.device, setting.threads, setting.batch,
               str(DTYPE).removeprefix("torch."), dense_ms, compressed_ms,
               dense_ms / compressed_ms, entry.params_ratio, entry.flop_ratio,
               entry.form_flop_ratio, form_counts(layer_forms), layer_forms)  # fmt: skip


def eager_rows(run: SettingRun, args: argparse.Namespace) -> list[Row]:
    """Dense, every inference form and every auto net, round-robin in one timing."""
    modules: dict[str, nn.Module] = {"dense": run.dense}
    for index, entry in enumerate(run.entries):
        if "eager-form" in args.runtimes:
            modules[f"form {index}"] = entry.form
        if "eager-auto" in args.runtimes:
            modules[f"auto {index}"] = entry.tucker
    seconds = time_modules(modules, run.example, args.runs, args.warmup)
    rows = []
    for index, entry in enumerate(run.entries):
        for runtime, key in (("eager-form", f"form {index}"), ("eager-auto", f"auto {index}")):
            if key in seconds:
                rows.append(row(run, entry, runtime, seconds, key))
    return rows


def export_key(run: SettingRun, plan: str, forms: Mapping[str, str]) -> tuple:
    setting = run.setting
    return (run.net.spec.label, plan, setting.batch, setting.device, tuple(sorted(forms.items())))


def torchscript_rows(run: SettingRun, shared: Shared, args: argparse.Namespace) -> list[Row]:
    example = run.example
    modules = {"dense": shared.torchscript(export_key(run, "dense", {}), run.dense, example)}
    for index, entry in enumerate(run.entries):
        key = export_key(run, entry.plan.label, entry.form.tucker_forms)
        modules[f"ts {index}"] = shared.torchscript(key, entry.form, example)
    with torch.no_grad():
        calls = {name: (lambda m=module: m(example)) for name, module in modules.items()}
        warmup = max(args.warmup, TORCHSCRIPT_WARMUP)
        seconds = time_side_by_side(calls, example.device, args.runs, warmup)
    return [row(run, entry, "torchscript", seconds, f"ts {index}")
            for index, entry in enumerate(run.entries)]  # fmt: skip


def onnxruntime_rows(run: SettingRun, shared: Shared, args: argparse.Namespace) -> list[Row]:
    setting, example = run.setting, run.example
    dense = shared.onnx(export_key(run, "dense", {}), run.dense, example)
    calls = {"dense": ort_call(dense, setting, example)}
    for index, entry in enumerate(run.entries):
        model_bytes = shared.onnx(export_key(run, entry.plan.label, entry.form.tucker_forms),
                                   entry.form, example)  # fmt: skip
        calls[f"ort {index}"] = ort_call(model_bytes, setting, example)
    # ORT returns host arrays: each call is complete when it returns, on any provider.
    seconds = time_side_by_side(calls, "cpu", args.runs, args.warmup)
    return [row(run, entry, "onnxruntime", seconds, f"ort {index}")
            for index, entry in enumerate(run.entries)]  # fmt: skip


def latency_plans(
    run: SettingRun, shared: Shared, args: argparse.Namespace, skipped: list[Skip]
) -> list[Plan]:
    """This setting's latency-budget plans, where they can be built (else a Skip each)."""
    reason = latency_unavailable()
    plans = []
    for target in args.latency_targets:
        what = f"{run.net.spec.label} latency {target:g}x, {run.setting.label}"
        if reason is not None:
            skipped.append(Skip(what, reason))
            continue
        try:
            table = shared.latency_table(run.setting)
            plans.append(latency_plan(run.net.spectra, table, target))
        except (AttributeError, TypeError, KeyError, ValueError, ImportError) as error:
            # An allocator interface other than latency_plan's (it was being written beside
            # this script), or one that refuses these layers: said, not hidden.
            skipped.append(Skip(what, f"building the plan raised {type(error).__name__}: {error}"))
    return plans


def setting_rows(net: NetRun, setting: Setting, shared: Shared, args: argparse.Namespace,
                 skipped: list[Skip]) -> tuple[list[Row], list[Plan]]:  # fmt: skip
    """The rows of one net in one setting, and the latency plans built for it."""
    device = torch.device(setting.device)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(setting.batch, *net.spec.input_shape, generator=generator)
    dense = net.dense if device.type == "cpu" else copy.deepcopy(net.dense).to(device)
    run = SettingRun(net, setting, dense.eval(), example.to(device, DTYPE))
    with torch_threads(setting.threads if device.type == "cpu" else None):
        tucker_autotune.clear_cache()  # auto chooses afresh with this setting's threads
        extra = latency_plans(run, shared, args, skipped)
        run.entries = [candidate(run, plan) for plan in [*net.params_plans, *extra]]
        rows = eager_rows(run, args)
        if "torchscript" in args.runtimes:
            rows += torchscript_rows(run, shared, args)
        if "onnxruntime" in args.runtimes:
            reason = onnxruntime_missing(setting.device)
            if reason is None:
                rows += onnxruntime_rows(run, shared, args)
            else:
                skipped.append(Skip(f"{net.spec.label} onnxruntime, {setting.label}", reason))
    return rows, extra


def settings(args: argparse.Namespace, skipped: list[Skip]) -> list[Setting]:
    cpu = [Setting("cpu", threads, batch) for threads in args.threads for batch in args.batches]
    if args.device != "cuda":
        return cpu
    if not torch.cuda.is_available():
        skipped.append(Skip("GPU rows", "--device cuda, but CUDA is not available"))
        return cpu
    return cpu + [Setting("cuda", None, batch) for batch in args.batches]


def net_run(spec: NetSpec, args: argparse.Namespace) -> NetRun:
    dense = spec.build()
    spectra = layer_spectra(dense, spec.input_shape)
    plans = [params_plan(dense, spectra, target) for target in args.params_targets]
    return NetRun(spec, dense, spectra, Templates(dense), plans)


def plan_note(spec: NetSpec, plan: Plan, setting: Setting | None = None) -> dict[str, object]:
    return {"model": spec.name, "input": spec.shape_label, "plan": plan.label,
            "setting": setting.label if setting else "all", "source": plan.source,
            "target": plan.target, "estimate": plan.estimate, "met": plan.met,
            "dense_layers": list(plan.dense_layers),
            "ranks": {name: list(ranks) for name, ranks in plan.ranks.items()}}  # fmt: skip


def inference_rows(
    args: argparse.Namespace, shared: Shared, skipped: list[Skip]
) -> tuple[list[Row], list[dict]]:
    rows: list[Row] = []
    notes = []
    chosen = settings(args, skipped)
    for spec in args.nets:
        net = net_run(spec, args)
        notes += [plan_note(spec, plan) for plan in net.params_plans]
        for setting in chosen:
            new, extra = setting_rows(net, setting, shared, args, skipped)
            rows += new
            notes += [plan_note(spec, plan, setting) for plan in extra]
            slowest = min((r.speedup for r in new if r.runtime == "eager-form"), default=None)
            note = f", slowest eager-form {slowest:.2f}x" if slowest is not None else ""
            print(f"measured {spec.label} {setting.label}: {len(new)} rows{note}",
                  file=sys.stderr, flush=True)  # fmt: skip
    return rows, notes


# ---- training steps -----------------------------------------------------------------------


def sgd_step(model: nn.Module, images: Tensor, labels: Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step


def with_implementation(template: nn.Module, implementation: str) -> nn.Module:
    model = copy.deepcopy(template)
    for module in model.modules():
        if isinstance(module, TuckerConv2d):
            module.implementation = implementation
    return model


def training_rows(args: argparse.Namespace) -> list[TrainRow]:
    """Per net: dense, auto and every forced path, one SGD step each, round-robin."""
    rows = []
    for spec in args.train_nets:
        dense = spec.build()
        template = copy.deepcopy(dense)
        decompose(template, uniform_plan(template, TRAIN_RATIO), init="hooi")
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(args.train_batch, *spec.input_shape, generator=generator)
        labels = torch.randint(0, CLASSES, (args.train_batch,), generator=generator)
        models = {"dense": dense, **{method: with_implementation(template, method)
                                     for method in ("auto", *IMPLEMENTATIONS)}}  # fmt: skip
        with torch_threads(1):
            tucker_autotune.clear_cache()
            steps = {name: sgd_step(model, images, labels) for name, model in models.items()}
            seconds = time_side_by_side(steps, "cpu", args.runs, args.warmup)
        choices = form_counts(auto_choices(models["auto"]))
        for method, value in seconds.items():
            rows.append(TrainRow(spec.name, spec.shape_label, f"ratio {TRAIN_RATIO:g}", method,
                                 "cpu", 1, args.train_batch, 1000 * value,
                                 seconds["dense"] / value,
                                 choices if method == "auto" else {}))  # fmt: skip
        print(f"measured training steps {spec.label}", file=sys.stderr, flush=True)
    return rows


# ---- targets ------------------------------------------------------------------------------


def describe(r: Row) -> str:
    threads = f" {r.threads} thr" if r.threads else ""
    return f"{r.model} {r.input} {r.plan} {r.device}{threads} b{r.batch}"


def check_a(rows: Sequence[Row]) -> Check:
    name = "(a) every inference-form plan >= 1.0x dense, every net and setting"
    forms = [r for r in rows if r.runtime == "eager-form"]
    if not forms:
        return Check(name, None, "no eager-form rows measured")
    slowest = min(forms, key=lambda r: r.speedup)
    below = sorted((r for r in forms if r.speedup < 1.0), key=lambda r: r.speedup)
    listed = "; ".join(f"{describe(r)} {r.speedup:.2f}x" for r in below[:4])
    more = f" (+{len(below) - 4} more)" if len(below) > 4 else ""
    detail = (f"{len(below)} of {len(forms)} below 1.0x{': ' + listed + more if below else ''}; "
              f"slowest {describe(slowest)}: {slowest.dense_ms:.3f} ms / "
              f"{slowest.compressed_ms:.3f} ms = {slowest.speedup:.2f}x")  # fmt: skip
    return Check(name, not below, detail)


def check_b(rows: Sequence[Row]) -> Check:
    name = f"(b) resnet20 3x32x32 cpu 1 thr b1 params 4x: inference form >= {TARGET_B_SPEEDUP:g}x"
    found = [r for r in rows if (r.model, r.input, r.plan, r.runtime, r.device, r.threads,
                                 r.batch) == ("resnet20", "3x32x32", "params 4x", "eager-form",
                                              "cpu", 1, 1)]  # fmt: skip
    if not found:
        return Check(name, None, "not measured in this run")
    r = found[0]
    detail = (f"dense {r.dense_ms:.3f} ms / form {r.compressed_ms:.3f} ms = {r.speedup:.2f}x "
              f"(FLOP ratio {r.flop_ratio:.2f}x, params ratio {r.params_ratio:.2f}x)")  # fmt: skip
    return Check(name, r.speedup >= TARGET_B_SPEEDUP, detail)


def check_c(rows: Sequence[Row], skipped: Sequence[Skip]) -> Check:
    name = f"(c) latency-budget plans' speed-up within {LATENCY_SLACK:.0%} of their targets"
    latency = [r for r in rows if r.runtime == "eager-form" and r.plan_metric == "latency"]
    if not latency:
        reasons = sorted({s.reason for s in skipped if " latency " in s.what})
        return Check(name, None, "no latency plans measured: " + ("; ".join(reasons) or "none"))

    def miss(r: Row) -> float:
        return abs(r.speedup / r.plan_target - 1.0)

    def text(r: Row) -> str:
        return (f"{describe(r)} measured {r.speedup:.2f}x (latency model: convs "
                f"{r.plan_estimate:.2f}x), off by {miss(r):.0%}")  # fmt: skip

    worst = max(latency, key=miss)
    unreachable = [r for r in latency if not r.plan_met]
    reachable = [r for r in latency if r.plan_met]
    detail = f"worst of {len(latency)}: {text(worst)}; {len(unreachable)} the allocator could "
    detail += "not bring to their target (its latency model says so)"
    if reachable and worst.plan_met is False:
        detail += f"; worst of the others: {text(max(reachable, key=miss))}"
    return Check(name, miss(worst) <= LATENCY_SLACK, detail)


def check_d(rows: Sequence[TrainRow]) -> list[Check]:
    name = f"(d) training step auto within {AUTO_SLACK:.0%} of the fastest forced path"
    if not rows:
        return [Check(name, None, "no training rows measured")]
    checks = []
    for net in dict.fromkeys((r.model, r.input) for r in rows):
        mine = {r.method: r for r in rows if (r.model, r.input) == net}
        fastest = min((mine[m] for m in IMPLEMENTATIONS), key=lambda r: r.step_ms)
        excess = mine["auto"].step_ms / fastest.step_ms - 1.0
        checks.append(Check(
            f"{name}, {net[0]} {net[1]} ratio {TRAIN_RATIO:g}", excess <= AUTO_SLACK,
            f"auto {mine['auto'].step_ms:.2f} ms ({forms_text(mine['auto'].auto_choices)}) vs "
            f"{fastest.method} {fastest.step_ms:.2f} ms: {excess * 100:+.1f}%; dense "
            f"{mine['dense'].step_ms:.2f} ms"))  # fmt: skip
    return checks


# ---- output -------------------------------------------------------------------------------


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
                     for line in lines)  # fmt: skip


def forms_text(forms: Mapping[str, int]) -> str:
    return ", ".join(f"{form} {count}" for form, count in forms.items()) or "no Tucker layers"


def print_tables(rows: Sequence[Row], train: Sequence[TrainRow]) -> None:
    print(format_table(
        ["model", "input", "plan", "runtime", "device", "thr", "batch", "dense ms", "compr. ms",
         "speed-up (measured)", "FLOP ratio (count)", "params ratio (count)", "forms"],
        [[r.model, r.input, r.plan, r.runtime, r.device, str(r.threads or "-"), str(r.batch),
          f"{r.dense_ms:.3f}", f"{r.compressed_ms:.3f}", f"{r.speedup:.2f}x",
          f"{r.flop_ratio:.2f}x", f"{r.params_ratio:.2f}x", forms_text(r.forms)]
         for r in rows]))  # fmt: skip
    if train:
        print("\ntraining step (SGD, forward + backward + step), cpu 1 thread")
        print(format_table(
            ["model", "input", "plan", "method", "batch", "step ms", "speed-up (measured)",
             "auto chose"],
            [[r.model, r.input, r.plan, r.method, str(r.batch), f"{r.step_ms:.2f}",
              f"{r.speedup:.2f}x", forms_text(r.auto_choices)] for r in train]))  # fmt: skip


def print_checks(checks: Sequence[Check], skipped: Sequence[Skip]) -> None:
    reasons: dict[str, list[str]] = {}
    for skip in skipped:
        reasons.setdefault(skip.reason, []).append(skip.what)
    for reason, whats in reasons.items():
        print(f"skipped {len(whats)} ({whats[0]}{', ...' if len(whats) > 1 else ''}): {reason}")
    print("\ntargets")
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[check.passed]
        print(f"  {verdict}  {check.name}: {check.detail}")


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def machine_info(args: argparse.Namespace) -> dict[str, object]:
    info: dict[str, object] = {
        "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "logical_cpus": os.cpu_count(),
    }  # fmt: skip
    with contextlib.suppress(ImportError):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    if args.device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


# ---- entry point --------------------------------------------------------------------------


def numbers(text: str, kind: type) -> list:
    return [kind(item) for item in text.split(",") if item]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: GPU rows as well as the CPU's")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny nets and settings (a smoke run)")
    parser.add_argument("--nets", default="", help="only these model names (comma-separated)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--threads", default=None, help="CPU thread counts, default 1,2")
    parser.add_argument("--batches", default=None, help="batch sizes, default 1,32")
    parser.add_argument("--runs", type=int, default=None, help="timed rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 3)")
    parser.add_argument("--no-training", action="store_true", help="skip the training rows")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    quick = args.quick
    args.runtimes = [item for item in args.runtimes.split(",") if item]
    if unknown := set(args.runtimes) - set(RUNTIMES):
        parser.error(f"unknown runtimes {sorted(unknown)}; known: {', '.join(RUNTIMES)}")
    args.threads = numbers(args.threads or ("1" if quick else "1,2"), int)
    args.batches = numbers(args.batches or ("2" if quick else "1,32"), int)
    args.runs = args.runs or (3 if quick else 15)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    names = set(numbers(args.nets, str))
    args.nets = [n for n in (QUICK_NETS if quick else FULL_NETS) if not names or n.name in names]
    args.train_nets = [] if args.no_training else [
        n for n in (QUICK_TRAIN_NETS if quick else TRAIN_NETS) if not names or n.name in names
    ]  # fmt: skip
    args.train_batch = 4 if quick else 32
    args.params_targets = (4.0,) if quick else PARAMS_TARGETS
    args.latency_targets = (1.5,) if quick else LATENCY_TARGETS
    return args


def settings_json(args: argparse.Namespace, shared: Shared) -> dict[str, object]:
    plain = {key: value for key, value in vars(args).items() if key not in ("nets", "train_nets")}
    plain["out"] = str(args.out)
    plain["nets"] = [asdict(n) for n in args.nets]
    plain["train_nets"] = [n.label for n in args.train_nets]
    plain["dtype"] = str(DTYPE).removeprefix("torch.")
    plain["weights"] = "random initialisation (seed 0), untrained"
    plain["onnx_exporters"] = sorted(shared.onnx_exporters)
    plain["timing"] = ("lightning_modules.inference.time_side_by_side: round-robin per setting "
                       "and runtime, medians; speedup = dense_ms / compressed_ms")  # fmt: skip
    return plain


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = load_average()
    if load_before and load_before[0] > 0.25 * (os.cpu_count() or 1):
        print(f"warning: load average {load_before[0]} before the run: other processes are "
              "busy, timings may be noisy")  # fmt: skip
    started = time.perf_counter()
    shared, skipped = Shared(), []
    rows, plan_notes = inference_rows(args, shared, skipped)
    train = training_rows(args)
    elapsed = time.perf_counter() - started
    checks = [check_a(rows), check_b(rows), check_c(rows, skipped), *check_d(train)]
    print_tables(rows, train)
    print()
    print_checks(checks, skipped)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(args),
        "settings": settings_json(args, shared),
        "load_average_before": load_before, "load_average_after": load_average(),
        "elapsed_s": round(elapsed, 1),
        "plans": plan_notes,
        "rows": [asdict(r) for r in rows],
        "training": [asdict(r) for r in train],
        "skipped": [asdict(s) for s in skipped],
        "checks": [asdict(c) for c in checks],
    }, indent=2) + "\n")  # fmt: skip
    print(f"\nwrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
