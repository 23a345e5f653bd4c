"""Export a sweep's best trial (or a chosen one) for use outside the sweep, and prove it works.

    exports/<sweep>/<trial name>/
      model.ckpt             the Lightning checkpoint (TuckerClassifier.load_from_checkpoint)
      state_dict.pt          plain weights of the network (torch.load(..., weights_only=True))
      model.json             what rebuilds the network: model, options, rank plan, input shape,
                             the normalisation the inputs need, and where it came from
      model.torchscript.pt   the network traced with a fixed path per Tucker layer (torch.jit.load)

The checkpoint is the trial's best-scoring one that Tune kept (it keeps the best by val_acc and
the latest per trial); its epoch's logged val_acc is the reference. The checkpoint and the
TorchScript file are evaluated on the validation split, rebuilt from the sweep's stored config
(same seed, same split), and must reproduce that accuracy. The files are logged on the trial's
MLflow run under export/ and registered in the MLflow Model Registry with the ranks as tags.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import nn

from lightning_modules.module import TuckerClassifier
from sweep.errors import ConfigError, TrackingError
from sweep.report import DEFAULT_EXPERIMENT, build_report
from sweep.report_data import (
    ReportError,
    RunRecord,
    SweepRuns,
    find_trial,
    load_sweep,
    metric_history,
)
from sweep.run_tags import EXPERIMENT_PATH_TAG
from sweep.trainable import CHECKPOINT_FILE, datamodule_for

__all__ = ["ExportCheckError", "ExportOutcome", "export_trial"]

ACCURACY_TOLERANCE = 1e-6
OUTPUT_TOLERANCE = 1e-4  # traced vs eager logits (float32, same ops)
EXPORT_ARTIFACT_PATH = "export"
FILES = {
    "checkpoint": "model.ckpt",
    "state_dict": "state_dict.pt",
    "model_json": "model.json",
    "torchscript": "model.torchscript.pt",
}


class ExportCheckError(Exception):
    """The exported model does not reproduce the trial's logged accuracy (a failed check,
    not bad input: the CLI exits with status 1)."""


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
    out_dir: Path
    files: dict[str, Path]
    implementations: dict[str, str]  # Tucker layer -> the path fixed for TorchScript
    registered_model: str | None = None
    model_version: str | None = None
    artifact_uri: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _KeptCheckpoint:
    path: str  # on the storage's filesystem
    epoch: int


def _storage_path(runs: SweepRuns, storage_path: str | None) -> str:
    from sweep.storage import SweepStore

    if EXPERIMENT_PATH_TAG in runs.parent.tags and storage_path is None:
        return runs.parent.tags[EXPERIMENT_PATH_TAG]
    if storage_path is None:
        storage_path = (runs.config.get("cluster") or {}).get("storage_path") or "ray_results"
    return SweepStore(storage_path, runs.name).experiment_path


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(path if "://" in path else "file://" + str(Path(path)))


def _trial_folder(fs: pafs.FileSystem, root: str, trial_name: str, where: str) -> str:
    try:
        entries = fs.get_file_info(pafs.FileSelector(root))
    except (FileNotFoundError, OSError):
        entries = []
    folders = [
        e.path
        for e in entries
        if e.type == pafs.FileType.Directory
        and (e.base_name == trial_name or e.base_name.startswith(trial_name + "_"))
    ]
    if not folders:
        raise ReportError(
            f"no Ray Tune results for trial {trial_name} in {where}: pass --storage-path (the "
            "cluster.storage_path the sweep ran with, e.g. ./ray_results)"
        )
    return sorted(folders)[-1]


def _kept_checkpoints(fs: pafs.FileSystem, folder: str) -> list[_KeptCheckpoint]:
    """The trial's checkpoints still on storage, with the epoch (training_iteration) each was
    written at, from the trial's result.json."""
    epochs: dict[str, int] = {}
    try:
        with fs.open_input_stream(f"{folder}/result.json") as stream:
            lines = stream.read().decode().splitlines()
    except (FileNotFoundError, OSError):
        lines = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("checkpoint_dir_name"):
            epochs[row["checkpoint_dir_name"]] = int(row["training_iteration"])
    kept = []
    for entry in fs.get_file_info(pafs.FileSelector(folder)):
        if entry.type != pafs.FileType.Directory or not entry.base_name.startswith("checkpoint_"):
            continue
        path = f"{entry.path}/{CHECKPOINT_FILE}"
        if fs.get_file_info(path).type != pafs.FileType.File:
            continue
        epoch = epochs.get(entry.base_name) or _checkpoint_epoch(fs, path)
        kept.append(_KeptCheckpoint(path, epoch))
    return sorted(kept, key=lambda c: c.epoch)


def _checkpoint_epoch(fs: pafs.FileSystem, path: str) -> int:
    """The epoch (Tune's training_iteration) a Lightning checkpoint was saved at, from the
    checkpoint itself: for when result.json is gone. Lightning stores the 0-based epoch that
    was ending (training.checkpoint_every may skip epochs, so Tune's checkpoint numbering
    does not tell)."""
    with fs.open_input_stream(path) as stream:
        saved = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
    return int(saved["epoch"]) + 1


def _choose_checkpoint(
    kept: list[_KeptCheckpoint], accuracy: dict[int, float]
) -> tuple[_KeptCheckpoint, float]:
    """The kept checkpoint with the best logged val_acc at its epoch (ties: the later)."""
    scored = [(accuracy[c.epoch], c.epoch, c) for c in kept if c.epoch in accuracy]
    if not scored:
        epochs = ", ".join(str(c.epoch) for c in kept)
        raise ReportError(f"no logged val_acc for the kept checkpoints (epochs {epochs})")
    value, _, checkpoint = max(scored, key=lambda item: item[:2])
    return checkpoint, value


def _copy(fs: pafs.FileSystem, source: str, destination: Path) -> None:
    with fs.open_input_stream(source) as stream, destination.open("wb") as out:
        shutil.copyfileobj(stream, out)


def _trained_on_gpu(runs: SweepRuns) -> bool:
    try:
        return float(runs.parent.params.get("resources/gpu", 0)) > 0
    except ValueError:
        return False


def _sweep_config(runs: SweepRuns) -> Any:
    from pydantic import ValidationError

    from sweep.config import SweepConfig, describe_validation_error

    if not runs.config:
        raise ReportError(f"sweep {runs.name!r} has no config.yaml artifact to rebuild its data")
    try:
        return SweepConfig.model_validate(runs.config)
    except ValidationError as error:
        raise ConfigError(
            f"the stored config of sweep {runs.name!r}: {describe_validation_error(error)}"
        ) from None


@torch.no_grad()
def val_accuracy(network: nn.Module, loader: Any) -> float:
    """Micro-averaged accuracy over the loader, as the trials' val_acc is computed."""
    correct = total = 0
    for images, labels in loader:
        correct += int((network(images).argmax(dim=1) == labels).sum())
        total += int(labels.numel())
    return correct / total


def fix_implementations(network: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Pin every `auto` Tucker layer to the cost model's path for `example`'s shape:
    `auto` dispatches in Python, which a trace would freeze at whatever it timed."""
    from lightning_modules.tucker import TuckerConv2d
    from lightning_modules.tucker_autotune import cost_model_choice

    chosen: dict[str, str] = {}
    handles = []
    for name, module in network.named_modules():
        if not isinstance(module, TuckerConv2d):
            continue

        def pin(layer: TuckerConv2d, inputs: tuple, name: str = name) -> None:
            if layer.implementation == "auto":
                layer.implementation = cost_model_choice(layer.geometry, layer.ranks, inputs[0])
            chosen[name] = layer.implementation

        handles.append(module.register_forward_pre_hook(pin))
    try:
        with torch.no_grad():
            network(example)
    finally:
        for handle in handles:
            handle.remove()
    return chosen


def _trace(network: nn.Module, example: torch.Tensor, check: torch.Tensor, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # Tucker paths branch on the factors' shapes: constants of the layer, safe to freeze.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(network, example, check_trace=False)
        eager, scripted = network(check), traced(check)
    if not torch.allclose(eager, scripted, atol=OUTPUT_TOLERANCE, rtol=OUTPUT_TOLERANCE):
        difference = float((eager - scripted).abs().max())
        raise ExportCheckError(
            f"the traced model's outputs differ from the eager model's by up to {difference:.3g}"
        )
    traced.save(str(path))


def _model_json(
    classifier: Any,
    datamodule: Any,
    runs: SweepRuns,
    trial: RunRecord,
    epoch: int,
    accuracy: float,
    implementations: dict[str, str],
) -> dict:
    hp = classifier.hparams
    return {
        "format": "tucker-sweep export v1",
        "model_name": hp.model_name,
        "model_options": dict(hp.model_options or {}),
        "in_channels": hp.in_channels,
        "num_classes": hp.num_classes,
        "input_shape": [hp.in_channels, *hp.input_size],
        "rank_plan": {name: list(ranks) for name, ranks in (hp.rank_plan or {}).items()},
        "implementations": implementations,
        "normalisation": {
            "mean": [float(v) for v in torch.as_tensor(datamodule.mean).flatten()],
            "std": [float(v) for v in torch.as_tensor(datamodule.std).flatten()],
            "note": "inputs are (x - mean) / std per channel, as in training",
        },
        "rebuild": (
            "from lightning_modules.models import build_model, decompose; "
            "net = build_model(model_name, in_channels, num_classes, **model_options); "
            "decompose(net, rank_plan, init='random'); "
            "net.load_state_dict(torch.load('state_dict.pt', weights_only=True))"
        ),
        "source": {
            "sweep": runs.name,
            "sweep_run_id": runs.parent.run_id,
            "trial_name": trial.trial_name,
            "trial_run_id": trial.run_id,
            "epoch": epoch,
            "val_acc": accuracy,
            "data": runs.config.get("data"),
            "tracking_uri": runs.tracking_uri,
        },
    }


def _register(
    client: MlflowClient,
    runs: SweepRuns,
    trial: RunRecord,
    files: dict[str, Path],
    model_name: str,
    tags: dict[str, str],
) -> tuple[str, str, str]:
    """Log the files on the trial's run and register them as a new model version."""
    registry = MlflowClient(tracking_uri=runs.tracking_uri, registry_uri=runs.tracking_uri)
    try:
        for path in files.values():
            client.log_artifact(trial.run_id, str(path), artifact_path=EXPORT_ARTIFACT_PATH)
        if not registry.search_registered_models(filter_string=f"name = '{model_name}'"):
            registry.create_registered_model(
                model_name,
                tags={"tucker_sweep.sweep": runs.name},
                description=f"Tucker-factorised CNNs exported from sweep {runs.name}",
            )
        source = f"{trial.artifact_uri.rstrip('/')}/{EXPORT_ARTIFACT_PATH}"
        version = registry.create_model_version(
            model_name,
            source=source,
            run_id=trial.run_id,
            tags=tags,
            description=f"{trial.trial_name} of sweep {runs.name}",
        )
    except (MlflowException, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TrackingError(
            f"could not register the model in the MLflow Model Registry of "
            f"{runs.tracking_uri}: {first_line} (the registry needs a database or server "
            "backend, e.g. sqlite:///mlflow.db; --no-register skips it)"
        ) from None
    return model_name, str(version.version), source


def export_trial(
    tracking_uri: str,
    sweep: str | None = None,
    experiment: str | None = None,
    trial: str | None = None,
    out_dir: Path | None = None,
    storage_path: str | None = None,
    model_name: str | None = None,
    register: bool = True,
) -> ExportOutcome:
    """Export the best trial of the sweep (the latest sweep if None), or `trial` (trial id,
    trial name, MLflow run id or index). Raises ReportError/TrackingError/ConfigError for
    what the user can fix and ExportCheckError when the export does not reproduce the logged
    accuracy."""
    client, runs = load_sweep(tracking_uri, sweep, experiment or DEFAULT_EXPERIMENT)
    if trial is None:
        best = build_report(client, runs, top_curves=0).best
        if best is None:
            raise ReportError(f"sweep {runs.name!r} has no finished trial to export yet")
        chosen = next(run for run in runs.trials if run.run_id == best.run_id)
    else:
        chosen = find_trial(runs, trial)
    config = _sweep_config(runs)
    experiment_path = _storage_path(runs, storage_path)
    fs, root = _filesystem(experiment_path)
    folder = _trial_folder(fs, root, chosen.trial_name, experiment_path)
    kept = _kept_checkpoints(fs, folder)
    if not kept:
        raise ReportError(f"trial {chosen.trial_name} has no checkpoint in {folder}")
    accuracy = dict(metric_history(client, chosen.run_id, "val_acc"))
    checkpoint, logged = _choose_checkpoint(kept, accuracy)
    best_epoch = max(accuracy, key=lambda epoch: (accuracy[epoch], -epoch))
    notes = []
    if accuracy[best_epoch] > logged:
        notes.append(
            f"the best epoch ({best_epoch}, val acc {accuracy[best_epoch]:.4f}) was not among "
            f"the checkpoints Tune kept; exported epoch {checkpoint.epoch}"
        )

    target = (
        Path(out_dir) if out_dir is not None else Path("exports") / runs.name / chosen.trial_name
    )
    target.mkdir(parents=True, exist_ok=True)
    files = {key: target / name for key, name in FILES.items()}
    _copy(fs, checkpoint.path, files["checkpoint"])
    classifier = TuckerClassifier.load_from_checkpoint(
        files["checkpoint"], weights_only=True, map_location="cpu"
    ).eval()
    network = classifier.model
    datamodule = datamodule_for(config)
    loader = datamodule.val_dataloader()  # sets the data module up: same seed, same split
    checkpoint_acc = val_accuracy(network, loader)

    torch.save(network.state_dict(), files["state_dict"])
    example = next(iter(loader))[0]
    implementations = fix_implementations(network, example)
    _trace(network, example, datamodule.val_tensors()[0][-7:], files["torchscript"])
    scripted = torch.jit.load(str(files["torchscript"]), map_location="cpu")
    torchscript_acc = val_accuracy(scripted, loader)
    document = _model_json(
        classifier, datamodule, runs, chosen, checkpoint.epoch, logged, implementations
    )
    files["model_json"].write_text(json.dumps(document, indent=2) + "\n")

    tolerance = ACCURACY_TOLERANCE
    if _trained_on_gpu(runs):
        # Checked here on the CPU: TF32 and other GPU kernels change the last bits of the
        # logits, which can flip a near-tie; allow that for two validation examples.
        tolerance = max(ACCURACY_TOLERANCE, 2 / len(datamodule.val_set))
        notes.append(
            f"trained on GPUs, checked on the CPU: agreement within {tolerance:.2g} val acc "
            "(two examples) is accepted"
        )
    for what, value in (("checkpoint", checkpoint_acc), ("TorchScript model", torchscript_acc)):
        if not math.isclose(value, logged, rel_tol=0, abs_tol=tolerance):
            raise ExportCheckError(
                f"the exported {what} of {chosen.trial_name} (epoch {checkpoint.epoch}) has val "
                f"acc {value:.6f} on the rebuilt validation split, but the trial logged "
                f"{logged:.6f}; files left in {target}"
            )
    registered = version = artifact_uri = None
    if register:
        hp = classifier.hparams
        tags = {
            f"ranks/{name}": "x".join(map(str, ranks))
            for name, ranks in (hp.rank_plan or {}).items()
        }
        tags.update(
            compression=repr(classifier.cost.compression),
            params=str(classifier.cost.params),
            val_acc=repr(logged),
            epoch=str(checkpoint.epoch),
            sweep=runs.name,
            trial=chosen.trial_name,
        )
        registered, version, artifact_uri = _register(
            client, runs, chosen, files, model_name or f"tucker-{runs.name}", tags
        )
    return ExportOutcome(
        sweep=runs.name,
        trial_name=chosen.trial_name,
        trial_run_id=chosen.run_id,
        epoch=checkpoint.epoch,
        best_epoch=best_epoch,
        logged_val_acc=logged,
        checkpoint_val_acc=checkpoint_acc,
        torchscript_val_acc=torchscript_acc,
        out_dir=target,
        files=files,
        implementations=implementations,
        registered_model=registered,
        model_version=version,
        artifact_uri=artifact_uri,
        notes=notes,
    )
