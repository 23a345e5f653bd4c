"""Writing the runs of a sweep's MLflow layout (see sweep/tracking/__init__.py) from the
driver: the parent run, the dense baseline, and closing what a stopped sweep left open."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweep.tracking.convergence import final_metrics
from sweep.tracking.names import KIND_TAG, SECONDS_METRIC, SWEEP_TAG

SKIPPED_IMAGES_METRIC = "skipped_images"
SKIPPED_IMAGES_FILE = "skipped_images.txt"


def _params(values: Mapping[str, Any]) -> list[Param]:
    # MLflow caps a param value at 6000 characters; ours are short.
    return [Param(key, str(value)) for key, value in values.items()]


def _metrics(values: Mapping[str, float], step: int, timestamp: int) -> list[Metric]:
    return [Metric(key, float(value), timestamp, step) for key, value in values.items()]


@dataclass(frozen=True)
class SweepTracking:
    """Where a running sweep is recorded: the client, the experiment and the parent run."""

    client: MlflowClient
    experiment_id: str
    parent_run_id: str


def find_sweep_run(client: MlflowClient, experiment_id: str, sweep_name: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{KIND_TAG}` = 'sweep' AND tags.`{SWEEP_TAG}` = '{sweep_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def start_sweep_run(
    client: MlflowClient, experiment_id: str, sweep_name: str, params: Mapping[str, Any]
) -> str:
    run = client.create_run(
        experiment_id,
        run_name=sweep_name,
        tags={KIND_TAG: "sweep", SWEEP_TAG: sweep_name},
    )
    client.log_batch(run.info.run_id, params=_params(params))
    return run.info.run_id


def start_child_run(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    run_name: str,
    kind: str,
    tags: Mapping[str, str] | None = None,
) -> str:
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={MLFLOW_PARENT_RUN_ID: parent_run_id, KIND_TAG: kind, **(tags or {})},
    )
    return run.info.run_id


def log_epoch_history(
    client: MlflowClient, run_id: str, history: Iterable[Mapping[str, float]]
) -> None:
    """Per-epoch metrics with step = epoch (1-based); each row has an `epoch` key."""
    metrics = []
    for row in history:
        epoch = int(row["epoch"])
        values = {k: v for k, v in row.items() if k != "epoch" and v is not None}
        metrics.extend(_metrics(values, epoch, 0))
    for start in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def log_final_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int
) -> None:
    client.log_batch(run_id, metrics=_metrics(metrics, step, int(time.time() * 1000)))


def log_baseline_run(
    client: MlflowClient,
    experiment_id: str,
    history: list[dict[str, float]],
    static_metrics: Mapping[str, float],
    target_accuracy: float,
    parent_run_id: str | None = None,
    sweep_name: str | None = None,
    kind: str = "baseline",
) -> str:
    """The dense baseline as a run (a child of the sweep when there is one): per-epoch
    metrics and the same final metrics as a trial, so reports compare like with like;
    `static_metrics` are its cost (and test accuracy, when measured). `kind`: `baseline`, or
    FINETUNED_BASELINE_KIND for the fine-tuned given model (its run name too)."""
    tags = {KIND_TAG: kind}
    if parent_run_id is not None:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    if sweep_name is not None:
        tags[SWEEP_TAG] = sweep_name  # the UI's filter for a sweep's runs
    run_id = client.create_run(experiment_id, run_name=kind, tags=tags).info.run_id
    log_epoch_history(client, run_id, history)
    epochs = {int(row["epoch"]): (row.get("val_acc", math.nan), row.get(SECONDS_METRIC, math.nan))
              for row in history}  # fmt: skip
    last = len(history)
    final = final_metrics(epochs, last, target_accuracy, static_metrics, stopped_early=False)
    log_final_metrics(client, run_id, final, last)
    return run_id


def log_skipped_images(client: MlflowClient, run_id: str, skipped: Sequence[str] | None) -> None:
    """The images the data module left out as unreadable (its skip_bad_images option): their
    count as the `skipped_images` metric and, if any, their list as skipped_images.txt. None:
    a data module that never skips any (nothing is logged)."""
    if skipped is None:
        return
    client.log_metric(run_id, SKIPPED_IMAGES_METRIC, len(skipped))
    if skipped:
        client.log_text(run_id, "".join(f"{path}\n" for path in skipped), SKIPPED_IMAGES_FILE)


def end_unfinished_trial_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, status: str
) -> None:
    """Close the trial runs still RUNNING under a sweep that stopped (a resume reopens
    them), so the UI shows no run that nothing is writing to."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' AND attributes.status = 'RUNNING'"
        ),
    )
    for run in runs:
        client.set_terminated(run.info.run_id, status=status)


@contextmanager
def runs_ended_on_error(tracking: SweepTracking) -> Iterator[None]:
    """Whatever stops a sweep's driver with an exception, it leaves no run of the sweep
    RUNNING: the parent and every unfinished child (baseline, trials) end KILLED after a stop
    (KeyboardInterrupt, of which a stop signal's StopRequested is one), FAILED after an
    error. A parent that already ended keeps its status."""
    try:
        yield
    except BaseException as error:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        client = tracking.client
        end_unfinished_trial_runs(client, tracking.experiment_id, tracking.parent_run_id, "KILLED")
        if client.get_run(tracking.parent_run_id).info.status == "RUNNING":
            client.set_terminated(tracking.parent_run_id, status=status)
        raise


def finish_run(client: MlflowClient, run_id: str, failed: bool = False) -> None:
    status = RunStatus.FAILED if failed else RunStatus.FINISHED
    client.set_terminated(run_id, status=RunStatus.to_string(status))
