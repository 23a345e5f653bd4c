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


def dense_latency_metrics(config: SweepConfig, shape: DataShape) -> dict[str, float]:
    """The dense model's median latency at each deploy batch size: latency_ms_b<B>."""
    deploy = config.deploy
    device, dtype = torch.device(config.deploy_device), getattr(torch, deploy.dtype)
    model = dense_model(config, shape).to(device, dtype).eval()
    metrics = {}
    with torch_threads(deploy.threads if device.type == "cpu" else None):
        for batch in deploy.batch_sizes:
            x = torch.randn(batch, *shape.input_shape).to(device, dtype)
            metrics[latency_metric(batch)] = 1000 * time_modules({"dense": model}, x)["dense"]
    return metrics


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
