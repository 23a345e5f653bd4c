"""After a sweep: the test accuracy of the Pareto-front trials that ASHA stopped before max_t
(a trial that ran to max_t measured its own), from the best checkpoint Tune kept of each,
logged on their MLflow runs. The fronts are drawn on validation accuracy: the test split
judges what validation selected and is never used to select."""

from __future__ import annotations

from collections.abc import Callable

import ray
from mlflow.tracking import MlflowClient

from lightning_modules.evaluation import accuracy
from lightning_modules.module import TuckerClassifier
from sweep.builders import prepare_data_once_per_node, sweep_datamodule
from sweep.config import SweepConfig
from sweep.report.ranking import front_trials
from sweep.sweep_files.trial_files import KeptCheckpoint, choose_kept, kept_checkpoints
from sweep.tracking.names import TEST_ACC_METRIC, TRIAL_ID_TAG
from sweep.tracking.sweep_runs import load_sweep, metric_history


def checkpoint_test_accuracy(config: SweepConfig, checkpoint: KeptCheckpoint) -> float:
    """Test-split accuracy of a trial's checkpoint (on a GPU if this process has one). Runs
    as a Ray task with a trial's resources."""
    import torch

    datamodule = sweep_datamodule(config)
    prepare_data_once_per_node(datamodule)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with checkpoint.lightning_file() as path:
        classifier = TuckerClassifier.load_from_checkpoint(
            path, weights_only=True, map_location=device
        )
    return accuracy(classifier, datamodule.test_dataloader(), device)


def evaluate_front(
    config: SweepConfig, experiment_path: str, progress: Callable[[str], None]
) -> int:
    """Measure and log the test accuracy of every front trial that lacks one; returns how many
    were measured."""
    client, runs = load_sweep(
        config.tracking.resolved_uri(), config.name, config.tracking.experiment
    )
    missing = [run for run in front_trials(runs) if run.metric(TEST_ACC_METRIC) is None]
    chosen = []
    for run in missing:
        kept = kept_checkpoints(experiment_path, run.tags.get(TRIAL_ID_TAG, ""))
        if kept:
            val_acc = dict(metric_history(client, run.run_id, "val_acc"))
            chosen.append((run, choose_kept(kept, val_acc)[0]))
    if not chosen:
        return 0
    progress(f"test accuracy of {len(chosen)} Pareto-front trials stopped before max_t")
    remote = ray.remote(num_cpus=config.resources.cpu, num_gpus=config.resources.gpu)(
        checkpoint_test_accuracy
    )
    measured = ray.get([remote.remote(config, checkpoint) for _, checkpoint in chosen])
    _log(client, [run.run_id for run, _ in chosen], measured)
    return len(chosen)


def _log(client: MlflowClient, run_ids: list[str], values: list[float]) -> None:
    for run_id, value in zip(run_ids, values, strict=True):
        client.log_metric(run_id, TEST_ACC_METRIC, value)
