"""Speed on the deployment device (config `deploy`): the dense model's latency, a trial model's
measured speed-up, and the per-layer latency table a latency budget is allocated with.

Each is measured where it is called: the launcher runs the dense and table measurements as a
Ray task with a trial's resources (sweep.tuning.baseline_step), and every trial times its own
model in its own process (sweep.tuning.trainable), beside a dense model timed in the same run.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_modules.data import DataShape
from lightning_modules.inference import measure_speed, time_modules, torch_threads
from lightning_modules.inference.latency_table import LatencyTable, TimingSetup
from lightning_modules.inference.timing import DEFAULT_RUNS, DEFAULT_WARMUP
from lightning_modules.nets import ConvLayer
from sweep.builders import dense_model
from sweep.config import SweepConfig
from sweep.tracking.names import (
    LATENCY_METRIC,
    dense_latency_metric,
    latency_metric,
    speedup_metric,
)

LATENCY_FILE = "latency.json"  # the latency table, beside seed.json
# Timed rounds of a trial's model and its dense twin after warm-up rounds, round-robin: a median
# of 9 side-by-side pairs steadies a ratio to a few percent on a quiet CPU, and keeps a trial's
# timing to about 0.2 s of a small net (the demo's trials train for seconds).
TRIAL_RUNS = 9
# The dense model alone, per deploy batch size: as many timed rounds as fit in this many seconds,
# from MIN_DENSE_RUNS up to DEFAULT_RUNS. Why: a ResNet-50 at 224x224, batch 64, one thread
# takes 13-16 s a forward on the 2-core development machine, and DEFAULT_WARMUP + DEFAULT_RUNS
# of them were over 4 minutes of `tucker-sweep seed`; a round of seconds needs fewer repeats
# than one of milliseconds, as it averages over the scheduler and cache noise that scatters
# short rounds. A median of 3 still ignores one disturbed round: the floor, however slow the
# forward (then 4 forwards in all, the first a warm-up). Small nets get DEFAULT_RUNS as before.
DENSE_TIMING_SECONDS = 3.0
MIN_DENSE_RUNS = 3


def device_name(device: str) -> str:
    """What the report names the device by: the GPU's or the CPU's model name."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def deploy_params(config: SweepConfig) -> dict[str, Any]:
    """The deployment device as params of the sweep's parent run (names.DEPLOY_PARAMS)."""
    deploy = config.deploy
    device = config.deploy_device
    return {
        "deploy/device": device,
        "deploy/device_name": device_name(device),
        "deploy/threads": deploy.threads,
        "deploy/batch_sizes": ",".join(str(b) for b in deploy.batch_sizes),
        "deploy/dtype": deploy.dtype,
    }


def timing_setup(config: SweepConfig) -> TimingSetup:
    """The latency table's setup: the deployment device at its first (primary) batch size."""
    deploy = config.deploy
    return TimingSetup(config.deploy_device, deploy.dtype, deploy.threads, deploy.batch_sizes[0])


def trial_speed_metrics(
    config: SweepConfig, shape: DataShape, model: nn.Module
) -> dict[str, float]:
    """A trial's model in its inference form against a fresh dense model of the same network,
    timed side by side at each deploy batch size: latency_ms_b<B>, dense_latency_ms_b<B>,
    speedup_b<B>, and latency_ms at the first batch size (what a searcher minimises)."""
    deploy = config.deploy
    figures = measure_speed(
        dense_model(config, shape), model, shape.input_shape, deploy.batch_sizes,
        device=config.deploy_device, dtype=getattr(torch, deploy.dtype), threads=deploy.threads,
        runs=TRIAL_RUNS,
    )  # fmt: skip
    metrics: dict[str, float] = {}
    for batch, figure in figures.items():
        metrics[latency_metric(batch)] = figure.compressed_ms
        metrics[dense_latency_metric(batch)] = figure.dense_ms
        metrics[speedup_metric(batch)] = figure.speedup
    metrics[LATENCY_METRIC] = metrics[latency_metric(deploy.batch_sizes[0])]
    return metrics


@dataclass(frozen=True)
class DenseLatency:
    """The dense model's median latency per deploy batch size, and the timed rounds behind it."""

    ms: dict[int, float]
    rounds: dict[int, int]

    def metrics(self) -> dict[str, float]:
        """latency_ms_b<B> per batch size, for the baseline run."""
        return {latency_metric(batch): ms for batch, ms in self.ms.items()}


def dense_timing_rounds(first_forward_s: float) -> tuple[int, int]:
    """(further warm-up rounds, timed rounds) after a first, untimed forward that took
    `first_forward_s`: DEFAULT_WARMUP and DEFAULT_RUNS in all where they fit in
    DENSE_TIMING_SECONDS, else no more warm-up (the first forward was it) and as many timed
    rounds as fit, MIN_DENSE_RUNS at least."""
    fitting = int(DENSE_TIMING_SECONDS / first_forward_s) if first_forward_s > 0 else DEFAULT_RUNS
    if fitting >= DEFAULT_RUNS:
        return DEFAULT_WARMUP - 1, DEFAULT_RUNS
    return 0, max(MIN_DENSE_RUNS, fitting)


def dense_latency(config: SweepConfig, shape: DataShape) -> DenseLatency:
    """The dense model's median latency at each deploy batch size, rounds as
    dense_timing_rounds gives them."""
    deploy = config.deploy
    device, dtype = torch.device(config.deploy_device), getattr(torch, deploy.dtype)
    model = dense_model(config, shape).to(device, dtype).eval()
    ms, rounds = {}, {}
    with torch_threads(deploy.threads if device.type == "cpu" else None):
        for batch in deploy.batch_sizes:
            x = torch.randn(batch, *shape.input_shape).to(device, dtype)
            warmup, runs = dense_timing_rounds(_first_forward_seconds(model, x))
            seconds = time_modules({"dense": model}, x, runs=runs, warmup=warmup)["dense"]
            ms[batch], rounds[batch] = 1000 * seconds, runs
    return DenseLatency(ms, rounds)


def _first_forward_seconds(model: nn.Module, x: torch.Tensor) -> float:
    """One forward, timed: the first warm-up round. With its allocations and kernel choices
    it is usually the slowest, so the rounds chosen from it fit in the time set."""
    return time_modules({"dense": model}, x, runs=1, warmup=0)["dense"]


def dense_latency_metrics(config: SweepConfig, shape: DataShape) -> dict[str, float]:
    """The dense model's median latency at each deploy batch size: latency_ms_b<B>."""
    return dense_latency(config, shape).metrics()


def latency_table(
    config: SweepConfig, layers: Sequence[ConvLayer], input_hw: Mapping[str, tuple[int, int]]
) -> LatencyTable:
    """Every given layer timed (dense and Tucker) on the deployment device."""
    table = LatencyTable(timing_setup(config))
    for layer in layers:
        table.layer(layer.geometry, input_hw[layer.name])
    return table


@dataclass(frozen=True)
class DeploymentTiming:
    """What the launcher's timing task brings back."""

    dense_metrics: dict[str, float]  # latency_ms_b<B> of the dense model
    table: dict[str, Any] | None  # LatencyTable.to_json(), for a latency budget
    device_name: str  # of the device it ran on


def measure_deployment(
    config: SweepConfig,
    shape: DataShape,
    layers: Sequence[ConvLayer],
    input_hw: Mapping[str, tuple[int, int]],
) -> DeploymentTiming:
    """The dense model's latency and, for `budget_metric: latency`, the layers' table."""
    table = None
    if config.decomposition.budget_metric == "latency":
        table = latency_table(config, layers, input_hw).to_json()
    return DeploymentTiming(
        dense_latency_metrics(config, shape), table, device_name(config.deploy_device)
    )
