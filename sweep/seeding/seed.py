"""Seed a sweep: the mode spectra of a trained dense baseline -> per-layer candidate ranks,
scored by the spectra's error bound (no HOOI here: a trial runs it for the plan it starts from).

Writes seed.json and the spectrum plot; used by `tucker-sweep seed` and by `launch`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from lightning_modules.data import DataShape
from lightning_modules.nets import conv_layers, input_sizes
from lightning_modules.ranks import candidate_ranks
from sweep.builders import checkpoint_weights, dense_model, sweep_datamodule
from sweep.config import SweepConfig
from sweep.errors import SweepInterrupted
from sweep.seeding.baseline import (
    BaselineResult,
    baseline_epochs,
    baseline_from_checkpoint,
    evaluate_baseline,
    pretrained_baseline,
    train_baseline,
)
from sweep.seeding.deployment import LATENCY_FILE, DenseLatency, dense_latency, latency_table
from sweep.seeding.seed_file import SeedFile, build_seed, write_seed
from sweep.seeding.spectrum_plot import plot_spectra
from sweep.space import per_layer_sizes, select_layers
from sweep.stop_signals import (
    StopRequested,
    StopSignals,
    exit_status,
    signal_name,
    stop_signals_raised,
)
from sweep.tracking.client import experiment_id_for, tracking_client
from sweep.tracking.layout import log_baseline_run

SEED_FILE = "seed.json"
SPECTRA_PLOT = "spectra.png"


@dataclass(frozen=True)
class SeedArtifacts:
    seed: SeedFile
    seed_path: Path
    plot_path: Path


def _usable_cpus() -> int:
    """The CPUs this process may run on. Why not torch.get_num_threads(): a sweep's driver
    keeps torch at one thread beside its trials (launch.configure_driver), but the seed is
    written before any trial starts, and `tucker-sweep seed` runs alone."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _trained_network(config: SweepConfig, shape: DataShape, baseline: BaselineResult) -> nn.Module:
    """The baseline's network with its weights, without the TuckerClassifier around it, whose
    cost count traces a copy of the whole model (seconds for a ResNet-50) for nothing here."""
    network = dense_model(config, shape)
    network.load_state_dict(baseline.state_dict)
    return network


def seed_from_baseline(
    config: SweepConfig,
    data_shape: DataShape,
    baseline: BaselineResult,
    out_dir: Path,
    checkpoint: str | None = None,
    run_id: str | None = None,
) -> SeedArtifacts:
    """Candidate ranks per layer from the baseline's trained kernels, written to out_dir."""
    analyses = candidate_ranks(
        _trained_network(config, data_shape, baseline),
        thresholds=config.decomposition.thresholds,
        method=config.decomposition.method,
        input_shape=data_shape.input_shape,
        workers=_usable_cpus(),
    )
    cost = baseline.cost if baseline.cost is not None else baseline.classifier().cost
    seed = build_seed(
        analyses,
        model={
            "name": config.model.spec,
            "options": dict(config.model.options),
            "in_channels": data_shape.in_channels,
            "num_classes": data_shape.num_classes,
            "input_size": list(data_shape.input_size),
        },
        data={"name": config.data.name, "options": dict(config.data.options)},
        baseline={
            "val_acc": baseline.val_acc,
            "epochs": baseline.epochs,
            "params": cost.params,
            "flops": cost.flops,
            "checkpoint": checkpoint,
            "run_id": run_id,
        },
        method=config.decomposition.method,
        thresholds=config.decomposition.thresholds,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_path = write_seed(seed, out_dir / SEED_FILE)
    plot_path = plot_spectra(seed, out_dir / SPECTRA_PLOT)
    return SeedArtifacts(seed, seed_path, plot_path)


def _write_latency_table(
    config: SweepConfig, model: nn.Module, shape: DataShape, out_dir: Path
) -> Path:
    """latency.json beside seed.json: the decomposed convs timed on this host."""
    layers = select_layers(config, conv_layers(model))
    table = latency_table(config, layers, input_sizes(model, shape.input_shape, nn.Conv2d))
    path = out_dir / LATENCY_FILE
    table.save(path)
    return path


@dataclass(frozen=True)
class SeedOutcome:
    artifacts: SeedArtifacts
    baseline_val_acc: float
    run_id: str
    tracking_uri: str
    seeded_space: int  # rank plans of mode per_layer, with the seed's candidates
    unseeded_space: int  # ... and with the ratio lists
    dense_latency: DenseLatency  # on the deployment device, here


def seed_command(config: SweepConfig, out_dir: Path, checkpoint: Path | None = None) -> SeedOutcome:
    """`tucker-sweep seed`: train (or load) the dense baseline, write seed.json and the plot,
    and record them on a `baseline` run in MLflow. SIGINT or SIGTERM stops it at any moment
    with SweepInterrupted (exit 130 or 143), its baseline run ended KILLED."""
    with stop_signals_raised() as signals:
        try:
            return _seed(config, out_dir, checkpoint, signals)
        except StopRequested as stop:
            raise SweepInterrupted(
                f"seed stopped by {signal_name(stop.signum)} before it finished; no MLflow run is "
                "left RUNNING",
                exit_status(stop.signum),
            ) from None


def _seed(
    config: SweepConfig, out_dir: Path, checkpoint: Path | None, signals: StopSignals
) -> SeedOutcome:
    datamodule = sweep_datamodule(config)
    shape = DataShape.of(datamodule)
    loaded = baseline_from_checkpoint(checkpoint, config, shape) if checkpoint else None
    if loaded is None and config.model.checkpoint is not None:
        # The user's own trained weights (model.checkpoint): analysed as they are.
        weights = checkpoint_weights(config, dense_model(config, shape))
        loaded = pretrained_baseline(config, shape, weights)
    client = tracking_client(config.tracking.resolved_uri())  # checked before training
    experiment_id = experiment_id_for(client, config.tracking.experiment)
    baseline = loaded or train_baseline(config, shape, baseline_epochs(config))
    network = dense_model(config, shape)  # its structure: layers and input sizes
    if checkpoint is not None:
        # The checkpoint's accuracy on this data (it has no training history here).
        baseline.history = [{"epoch": 0, **evaluate_baseline(baseline, datamodule)}]
    # The dense model's latency on the deployment device, here (no Ray: this host).
    speed = dense_latency(config, shape)
    run_id = None
    try:
        # Held off while the run is created and its history logged: a stop there would leave
        # a RUNNING run whose id this code never learnt. Raised when the block ends, here.
        with signals.deferred():
            run_id = log_baseline_run(
                client,
                experiment_id,
                [row for row in baseline.history if row["epoch"] > 0],
                {**baseline.static_metrics(), **speed.metrics()},
                config.stopping.target_accuracy,
            )
        artifacts = seed_from_baseline(
            config, shape, baseline, out_dir,
            checkpoint=str(checkpoint) if checkpoint else None, run_id=run_id,
        )  # fmt: skip
        for path in (artifacts.seed_path, artifacts.plot_path):
            client.log_artifact(run_id, str(path))
        if config.decomposition.budget_metric == "latency":
            table_path = _write_latency_table(config, network, shape, out_dir)
            client.log_artifact(run_id, str(table_path))
        client.set_terminated(run_id, status="FINISHED")
    except BaseException as error:
        if run_id is not None:
            stopped = isinstance(error, KeyboardInterrupt)  # a stop signal's StopRequested too
            client.set_terminated(run_id, status="KILLED" if stopped else "FAILED")
        raise
    layers = conv_layers(network)
    seeded, unseeded = per_layer_sizes(config, layers, artifacts.seed.seed_data())
    return SeedOutcome(
        artifacts, baseline.val_acc, run_id, client.tracking_uri, seeded, unseeded, speed
    )
