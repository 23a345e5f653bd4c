"""An exported model as a new version in the MLflow Model Registry, its files logged on the
trial's run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lightning_modules.module import TuckerClassifier
from sweep.errors import TrackingError, first_line
from sweep.tracking.names import EXPORT_ARTIFACT_PATH, SWEEP_TAG
from sweep.tracking.sweep_runs import RunRecord, SweepRuns
from sweep.trial_params import ranks_params


@dataclass(frozen=True)
class Registered:
    model_name: str
    version: str
    artifact_uri: str  # the export/ folder on the trial's run


def version_tags(
    classifier: TuckerClassifier, runs: SweepRuns, trial: RunRecord, epoch: int, val_acc: float
) -> dict[str, str]:
    """What a model version says of itself: the ranks per layer, its cost and accuracy, and
    the sweep, trial and epoch it came from."""
    tags = ranks_params(classifier.hparams.rank_plan or {})
    tags.update(
        compression=repr(classifier.cost.compression),
        params=str(classifier.cost.params),
        val_acc=repr(val_acc),
        epoch=str(epoch),
        sweep=runs.name,
        trial=trial.trial_name,
    )
    return tags


def register_export(
    client: MlflowClient,
    runs: SweepRuns,
    trial: RunRecord,
    files: dict[str, Path],
    model_name: str,
    tags: dict[str, str],
) -> Registered:
    """Log the files on the trial's run and register them as a new model version."""
    registry = MlflowClient(tracking_uri=runs.tracking_uri, registry_uri=runs.tracking_uri)
    try:
        for path in files.values():
            client.log_artifact(trial.run_id, str(path), artifact_path=EXPORT_ARTIFACT_PATH)
        if not registry.search_registered_models(filter_string=f"name = '{model_name}'"):
            registry.create_registered_model(
                model_name,
                tags={SWEEP_TAG: runs.name},
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
        raise TrackingError(
            f"could not register the model in the MLflow Model Registry of "
            f"{runs.tracking_uri}: {first_line(error)} (the registry needs a database or server "
            "backend, e.g. sqlite:///mlflow.db; --no-register skips it)"
        ) from None
    return Registered(model_name, str(version.version), source)
