"""Seed a sweep: HOOI analysis of a trained dense baseline -> per-layer candidate ranks.

Writes seed.json and the spectrum plot; used by `tucker-sweep seed` and by `launch`.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from lightning_modules.data import ClassificationDataModule
from lightning_modules.models import conv_layers
from lightning_modules.module import TuckerClassifier
from sweep.baseline import BaselineResult, baseline_epochs, train_baseline
from sweep.config import SweepConfig
from sweep.errors import TuckerSweepError
from sweep.ranks import candidate_ranks
from sweep.seed_file import SeedFile, build_seed, write_seed
from sweep.space import build_rank_space
from sweep.spectrum_plot import plot_spectra
from sweep.tracking import experiment_id_for, log_baseline_run, tracking_client
from sweep.trainable import DataShape, datamodule_for

SEED_FILE = "seed.json"
SPECTRA_PLOT = "spectra.png"


@dataclass(frozen=True)
class SeedArtifacts:
    seed: SeedFile
    seed_path: Path
    plot_path: Path


def seed_from_baseline(
    config: SweepConfig,
    data_shape: DataShape,
    baseline: BaselineResult,
    out_dir: Path,
    checkpoint: str | None = None,
    run_id: str | None = None,
) -> SeedArtifacts:
    """Candidate ranks per layer from the baseline's trained kernels, written to out_dir."""
    classifier = baseline.classifier()
    analyses = candidate_ranks(
        classifier.model,
        thresholds=config.decomposition.thresholds,
        method=config.decomposition.method,
        input_shape=(data_shape.in_channels, *data_shape.input_size),
    )
    cost = classifier.cost
    seed = build_seed(
        analyses,
        model={
            "name": config.model.name,
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


class CheckpointMismatchError(TuckerSweepError, ValueError):
    """A checkpoint that is not a dense model of the configured architecture."""


def baseline_from_checkpoint(path: Path, config: SweepConfig, shape: DataShape) -> BaselineResult:
    """A dense baseline from a TuckerClassifier checkpoint, checked against the config."""
    if not path.is_file():
        raise CheckpointMismatchError(f"checkpoint not found: {path}")
    try:
        classifier = TuckerClassifier.load_from_checkpoint(path, map_location="cpu",
                                                           weights_only=True)  # fmt: skip
    except (KeyError, RuntimeError, TypeError, ValueError, pickle.UnpicklingError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointMismatchError(
            f"{path} is not a tucker-sweep (TuckerClassifier) checkpoint: {first_line}"
        ) from None
    hp = classifier.hparams
    if hp.rank_plan:
        raise CheckpointMismatchError(
            f"{path} holds a Tucker model ({len(hp.rank_plan)} decomposed layers): the seed "
            "needs a dense baseline"
        )
    wanted = (config.model.name, shape.in_channels, shape.num_classes, list(shape.input_size))
    found = (hp.model_name, hp.in_channels, hp.num_classes, list(hp.input_size))
    if wanted != found or dict(hp.model_options) != dict(config.model.options):
        raise CheckpointMismatchError(
            f"{path} is a {found[0]} for {found[1]}-channel {found[3][0]}x{found[3][1]} inputs "
            f"and {found[2]} classes; the config asks for a {wanted[0]} for {wanted[1]}-channel "
            f"{wanted[3][0]}x{wanted[3][1]} inputs and {wanted[2]} classes"
        )
    state = {key: value.detach().cpu() for key, value in classifier.model.state_dict().items()}
    return BaselineResult(state, dict(hp), history=[], cost=classifier.cost)


@dataclass(frozen=True)
class SeedOutcome:
    artifacts: SeedArtifacts
    baseline_val_acc: float
    run_id: str
    tracking_uri: str
    seeded_space: int
    unseeded_space: int


def seed_command(config: SweepConfig, out_dir: Path, checkpoint: Path | None = None) -> SeedOutcome:
    """`tucker-sweep seed`: train (or load) the dense baseline, write seed.json and the plot,
    and record them on a `baseline` run in MLflow."""
    datamodule = datamodule_for(config)
    shape = DataShape.of(datamodule)
    loaded = baseline_from_checkpoint(checkpoint, config, shape) if checkpoint else None
    client = tracking_client(config.tracking.resolved_uri())  # checked before training
    experiment_id = experiment_id_for(client, config.tracking.experiment)
    baseline = loaded or train_baseline(config, shape, baseline_epochs(config))
    if checkpoint is not None:
        # The checkpoint's accuracy on this data (it has no training history here).
        baseline.history = [{"epoch": 0, **evaluate(baseline, datamodule)}]
    cost = baseline.cost
    run_id = log_baseline_run(
        client,
        experiment_id,
        [row for row in baseline.history if row["epoch"] > 0],
        {"params": cost.params, "flops": cost.flops, "compression": 1.0},
        config.stopping.target_accuracy,
    )
    try:
        artifacts = seed_from_baseline(
            config, shape, baseline, out_dir,
            checkpoint=str(checkpoint) if checkpoint else None, run_id=run_id,
        )  # fmt: skip
        for path in (artifacts.seed_path, artifacts.plot_path):
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status="FINISHED")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    layers = conv_layers(baseline.classifier().model)
    seeded = build_rank_space(config, layers, artifacts.seed).size()
    unseeded = build_rank_space(config, layers, None).size()
    return SeedOutcome(artifacts, baseline.val_acc, run_id, client.tracking_uri, seeded, unseeded)


def evaluate(baseline: BaselineResult, datamodule: ClassificationDataModule) -> dict[str, float]:
    """Validation accuracy of the baseline's weights."""
    classifier = baseline.classifier().eval()
    images, labels = datamodule.val_tensors()
    with torch.no_grad():
        predictions = classifier(images).argmax(dim=1)
    return {"val_acc": float((predictions == labels).float().mean())}
