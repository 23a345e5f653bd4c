"""Export a sweep's recommended trial (or a chosen one): its best kept checkpoint, rebuilt,
written out in its inference form (TorchScript, ONNX), checked against the accuracy the trial
logged, timed against the dense network, and registered."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from lightning_modules.data import ClassificationDataModule, DataShape
from lightning_modules.evaluation import accuracy
from lightning_modules.module import TuckerClassifier
from lightning_modules.tucker import save_compressed
from sweep.builders import dense_model, sweep_datamodule
from sweep.config import SweepConfig
from sweep.errors import ConfigError, ReportError, describe_validation_error
from sweep.export.checks import accuracy_tolerance, check_accuracy
from sweep.export.deployable import Inputs, write_deployable
from sweep.export.latency import Latency
from sweep.export.model_card import model_card
from sweep.export.registry import Registered, register_export, version_tags
from sweep.folders import named_folder
from sweep.report.build import DEFAULT_CRITERIA, build_report
from sweep.report.schema import Criteria, Recommendation, Report
from sweep.sweep_files.store import SweepStore
from sweep.sweep_files.trial_files import KeptCheckpoint, choose_kept, kept_checkpoints
from sweep.tracking.names import EXPERIMENT_PATH_TAG, TRIAL_ID_TAG, trial_index
from sweep.tracking.sweep_runs import RunRecord, SweepRuns, find_trial, load_sweep, metric_history

FILES = {
    "checkpoint": "model.ckpt",
    "state_dict": "state_dict.pt",
    "model_json": "model.json",
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
    # The user's own model class rebuilds from this with lightning_modules.tucker.load_compressed.
    "compressed": "compressed.pt",
}


@dataclass(frozen=True)
class ExportOutcome:
    sweep: str
    trial_name: str
    trial_run_id: str
    epoch: int  # the epoch whose checkpoint was exported
    best_epoch: int  # the trial's best epoch by logged val_acc (may not have been kept)
    logged_val_acc: float  # at `epoch`
    checkpoint_val_acc: float
    torchscript_val_acc: float
    onnx_val_acc: float
    out_dir: Path
    files: dict[str, Path]
    forms: dict[str, str]  # Tucker layer -> its form in the exported inference form
    latency: Latency  # the exported network against dense, per batch size and runtime
    registered_model: str | None = None
    model_version: str | None = None
    artifact_uri: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def speedups(self) -> dict[int, dict[str, float]]:
        """Batch size -> runtime -> measured speed-up over dense (one run's ratio)."""
        return {
            batch: {runtime: figures.speedup for runtime, figures in runtimes.items()}
            for batch, runtimes in self.latency.by_batch.items()
        }


@dataclass(frozen=True)
class _Chosen:
    """The trial to export and the checkpoint of it, with the val_acc logged at its epoch."""

    trial: RunRecord
    checkpoint: KeptCheckpoint
    logged_val_acc: float
    best_epoch: int
    notes: list[str]


def _drop_needed(report: Report, recommendation: Recommendation) -> float | None:
    """The --max-drop (points, one decimal, rounded up) that admits the closest trial."""
    reference = report.baseline.best_val_acc if report.baseline else None
    closest = recommendation.closest
    if reference is None or closest is None or closest.best_val_acc is None:
        return None
    # Less the 1e-12 of val acc that the recommendation allows for round-off (1e-9 here).
    return math.ceil(1000 * (reference - closest.best_val_acc) - 1e-9) / 10


def _nothing_recommended(report: Report) -> ReportError:
    """Why no trial is recommended, and the two ways out: a wider tolerance, or --trial."""
    recommendation = report.recommended
    closest = recommendation.closest
    if closest is None:  # none meets the budget criteria
        return ReportError(
            f"sweep {report.sweep.name!r} has no trial to recommend: {recommendation.note}; "
            "loosen --budget/--min-compression, or --trial exports any trial"
        )
    index = trial_index(closest.trial_name)
    drop = _drop_needed(report, recommendation)
    wider = f"--max-drop {drop:g}" if drop is not None else "a larger --max-drop"
    return ReportError(
        f"sweep {report.sweep.name!r} has no trial to recommend: {recommendation.note}; "
        f"{wider} admits it, or --trial {index} exports it"
    )


def _choose_trial(
    client: MlflowClient, runs: SweepRuns, wanted: str | None, criteria: Criteria
) -> RunRecord:
    """`wanted`, or else the report's recommended trial under `criteria`."""
    if wanted is not None:
        return find_trial(runs, wanted)
    report = build_report(client, runs, criteria)
    if report.best is None:
        raise ReportError(f"sweep {runs.name!r} has no finished trial to export yet")
    if report.recommended.trial is None:
        raise _nothing_recommended(report)
    return find_trial(runs, report.recommended.trial.run_id)


def _experiment_path(runs: SweepRuns, storage_path: str | None) -> str:
    """Where Tune's results of the sweep are: as the sweep recorded it, or under the given
    (or configured) storage path."""
    if EXPERIMENT_PATH_TAG in runs.parent.tags and storage_path is None:
        return runs.parent.tags[EXPERIMENT_PATH_TAG]
    if storage_path is None:
        storage_path = (runs.config.get("cluster") or {}).get("storage_path") or "ray_results"
    return SweepStore(storage_path, runs.name).experiment_path


def _choose_checkpoint(
    client: MlflowClient, runs: SweepRuns, trial: RunRecord, storage_path: str | None
) -> _Chosen:
    """The kept checkpoint with the best logged val_acc at its epoch (ties: the later)."""
    kept = kept_checkpoints(_experiment_path(runs, storage_path), trial.tags.get(TRIAL_ID_TAG, ""))
    if not kept:
        raise ReportError(f"trial {trial.trial_name} has no checkpoint in the sweep's Tune results")
    accuracy = dict(metric_history(client, trial.run_id, "val_acc"))
    checkpoint, logged = choose_kept(kept, accuracy)
    best_epoch = max(accuracy, key=lambda epoch: (accuracy[epoch], -epoch))
    notes = []
    if accuracy[best_epoch] > logged:
        notes.append(
            f"the best epoch ({best_epoch}, val acc {accuracy[best_epoch]:.4f}) was not among "
            f"the checkpoints Tune kept; exported epoch {checkpoint.epoch}"
        )
    return _Chosen(trial, checkpoint, logged, best_epoch, notes)


def _stored_config(runs: SweepRuns) -> SweepConfig:
    """The config the sweep ran with: it rebuilds the same validation split."""
    if not runs.config:
        raise ReportError(f"sweep {runs.name!r} has no config.yaml artifact to rebuild its data")
    try:
        return SweepConfig.model_validate(runs.config)
    except ValidationError as error:
        raise ConfigError(
            f"the stored config of sweep {runs.name!r}: {describe_validation_error(error)}"
        ) from None


def _trained_on_gpu(runs: SweepRuns) -> bool:
    try:
        return float(runs.parent.params.get("resources/gpu", 0)) > 0
    except ValueError:
        return False


@dataclass(frozen=True)
class _Written:
    classifier: TuckerClassifier
    files: dict[str, Path]
    forms: dict[str, str]
    checkpoint_val_acc: float
    torchscript_val_acc: float
    onnx_val_acc: float
    latency: Latency
    notes: list[str]


def _load_checkpoint(chosen: _Chosen, files: dict[str, Path]) -> TuckerClassifier:
    with chosen.checkpoint.lightning_file() as source:
        shutil.copyfile(source, files["checkpoint"])
    return TuckerClassifier.load_from_checkpoint(
        files["checkpoint"], weights_only=True, map_location="cpu"
    ).eval()


def _write_files(
    chosen: _Chosen, runs: SweepRuns, config: SweepConfig, datamodule: ClassificationDataModule,
    target: Path,
) -> _Written:  # fmt: skip
    """The checkpoint, the plain weights, the inference form as TorchScript and ONNX, and
    model.json, each model evaluated on the validation split on the way."""
    target.mkdir(parents=True, exist_ok=True)
    files = {key: target / name for key, name in FILES.items()}
    classifier = _load_checkpoint(chosen, files)
    network = classifier.model
    loader = datamodule.val_dataloader()  # sets the data module up: same seed, same split
    checkpoint_acc = accuracy(network, loader)
    # Measured once, for the comparison with the original model; it selects nothing.
    test_acc = accuracy(network, datamodule.test_dataloader())
    torch.save(network.state_dict(), files["state_dict"])
    save_compressed(network, files["compressed"])  # the TuckerConv2d network, for load_compressed
    inputs = Inputs(next(iter(loader))[0], datamodule.val_tensors()[0][-7:], loader)
    dense = dense_model(config, DataShape.of(datamodule))  # its speed, not its weights
    deployable = write_deployable(network, dense, inputs, config, files)
    card = model_card(
        classifier, datamodule, runs, chosen.trial, chosen.checkpoint.epoch,
        chosen.logged_val_acc, checkpoint_acc, deployable, test_acc,
    )  # fmt: skip
    files["model_json"].write_text(json.dumps(card, indent=2) + "\n")
    return _Written(
        classifier, files, deployable.forms, checkpoint_acc, deployable.torchscript_val_acc,
        deployable.onnx_val_acc, deployable.latency, deployable.notes,
    )  # fmt: skip


def export_trial(
    tracking_uri: str,
    sweep: str | None,
    experiment: str,
    trial: str | None = None,
    out_dir: Path | None = None,
    storage_path: str | None = None,
    model_name: str | None = None,
    register: bool = True,
    criteria: Criteria = DEFAULT_CRITERIA,
) -> ExportOutcome:
    """Export the report's recommended trial under `criteria` of the sweep (the latest sweep
    if None), or `trial` (trial id, trial name, MLflow run id or index). Raises
    ReportError/TrackingError/ConfigError for what the user can fix and ExportCheckError when
    the export does not reproduce the logged accuracy."""
    client, runs = load_sweep(tracking_uri, sweep, experiment)
    chosen_trial = _choose_trial(client, runs, trial, criteria)
    name = chosen_trial.trial_name
    if out_dir is not None:
        target = Path(out_dir)
    else:  # names read from the store: each checked to stay one folder (sweep.folders)
        sweep_folder = named_folder(Path("exports"), runs.name, "the sweep name", ReportError)
        target = named_folder(sweep_folder, name, "the tracking store's trial name", ReportError)
    config = _stored_config(runs)
    chosen = _choose_checkpoint(client, runs, chosen_trial, storage_path)
    datamodule = sweep_datamodule(config)
    written = _write_files(chosen, runs, config, datamodule, target)

    notes = [*chosen.notes, *written.notes]
    tolerance, note = accuracy_tolerance(_trained_on_gpu(runs), len(datamodule.val_set))
    notes += [note] if note else []
    epoch = chosen.checkpoint.epoch
    for what, value in (
        ("checkpoint", written.checkpoint_val_acc),
        ("TorchScript model", written.torchscript_val_acc),
        ("ONNX model (ONNX Runtime)", written.onnx_val_acc),
    ):
        check_accuracy(
            f"{what} of {name} (epoch {epoch})", value, chosen.logged_val_acc, tolerance,
            f"files left in {target}",
        )  # fmt: skip
    registered: Registered | None = None
    if register:
        tags = version_tags(written.classifier, runs, chosen.trial, epoch, chosen.logged_val_acc)
        registered = register_export(
            client, runs, chosen.trial, written.files, model_name or f"tucker-{runs.name}", tags
        )
    return ExportOutcome(
        sweep=runs.name,
        trial_name=name,
        trial_run_id=chosen.trial.run_id,
        epoch=epoch,
        best_epoch=chosen.best_epoch,
        logged_val_acc=chosen.logged_val_acc,
        checkpoint_val_acc=written.checkpoint_val_acc,
        torchscript_val_acc=written.torchscript_val_acc,
        onnx_val_acc=written.onnx_val_acc,
        out_dir=target,
        files=written.files,
        forms=written.forms,
        latency=written.latency,
        registered_model=registered.model_name if registered else None,
        model_version=registered.version if registered else None,
        artifact_uri=registered.artifact_uri if registered else None,
        notes=notes,
    )
