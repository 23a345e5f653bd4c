"""Reading a sweep back from MLflow: its parent run, the dense baseline, the trial runs and
the config it was launched with. Works on any tracking URI (SQLite, a server); every way it
can fail is a `ReportError` naming what is missing."""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweep.errors import ReportError
from sweep.folders import plain_name
from sweep.tracking.client import mlflow_environment, open_client
from sweep.tracking.driver import DRIVER_TAG, driver_alive
from sweep.tracking.names import (
    CONFIG_ARTIFACT,
    FINETUNED_BASELINE_KIND,
    KIND_TAG,
    STOP_REASON_TAG,
    STOP_REASONS,
    SWEEP_TAG,
    TRIAL_ID_TAG,
    TRIAL_NAME_TAG,
    VAL_ACC,
    trial_index,
)
from sweep.trial_params import ranks_from_params


@dataclass(frozen=True)
class RunRecord:
    """The parts of an MLflow run a report reads."""

    run_id: str
    name: str
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]

    @classmethod
    def of(cls, run: Run) -> RunRecord:
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id,
            status=run.info.status,
            start_time=run.info.start_time,
            end_time=run.info.end_time,
            artifact_uri=run.info.artifact_uri,
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
        )

    def metric(self, key: str) -> float | None:
        """A metric, None where absent or NaN (never reached, never logged)."""
        value = self.metrics.get(key)
        if value is None or not math.isfinite(value):
            return None
        return float(value)

    @property
    def ranks(self) -> dict[str, tuple[int, int, int]]:
        """Layer -> (N', C', D') from the trial's params, in model order."""
        ranks = ranks_from_params(self.params)
        return {name: ranks[name] for name in sorted(ranks, key=natural_key)}

    @property
    def trial_name(self) -> str:
        return self.tags.get(TRIAL_NAME_TAG, self.name)


def natural_key(text: str) -> list[Any]:
    """'block10.conv2' after 'block2.conv1': layer names in the order a model defines them."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


@dataclass
class SweepRuns:
    """One sweep as recorded in MLflow."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str
    parent: RunRecord
    baseline: RunRecord | None
    trials: list[RunRecord]
    # model.checkpoint: the given model fine-tuned with a trial's budget (`baseline` is the
    # given model as it is).
    finetuned_baseline: RunRecord | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the config.yaml it was launched with

    @property
    def name(self) -> str:
        return self.parent.tags.get(SWEEP_TAG, self.parent.name)


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def experiment_id_of(client: MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ReportError(f"no MLflow experiment named {experiment!r} in the tracking store")
    return found.experiment_id


def sweep_parent_run(
    client: MlflowClient, experiment_id: str, experiment: str, sweep: str | None
) -> Run:
    """The sweep's parent run (the latest started, if several share the name), or the latest
    sweep of the experiment when `sweep` is None."""
    condition = f"tags.`{KIND_TAG}` = 'sweep'"
    if sweep is not None:
        condition += f" AND tags.`{SWEEP_TAG}` = '{_quoted(sweep)}'"
    runs = client.search_runs(
        [experiment_id],
        filter_string=condition,
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        return runs[0]
    if sweep is None:
        raise ReportError(f"no sweep in MLflow experiment {experiment!r}: run tucker-sweep launch")
    names = sorted(
        {
            run.data.tags.get(SWEEP_TAG, "?")
            for run in _search_all(client, experiment_id, f"tags.`{KIND_TAG}` = 'sweep'")
        }
    )
    known = f"; sweeps there: {', '.join(names[:10])}" if names else ""
    raise ReportError(f"no sweep named {sweep!r} in MLflow experiment {experiment!r}{known}")


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


def read_config(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The config.yaml logged on the sweep's parent run ({} if there is none)."""
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    with tempfile.TemporaryDirectory(prefix="tucker-sweep-") as folder, mlflow_environment(quiet):
        try:
            path = client.download_artifacts(run_id, CONFIG_ARTIFACT, folder)
        except (MlflowException, OSError):
            return {}
        return yaml.safe_load(Path(path).read_text()) or {}


def load_sweep(
    tracking_uri: str, sweep: str | None, experiment: str
) -> tuple[MlflowClient, SweepRuns]:
    """The client and the sweep's runs. ReportError if the store, the experiment or the sweep
    is missing, or the sweep has no trial run yet."""
    client = open_client(tracking_uri)
    experiment_id = experiment_id_of(client, experiment)
    parent = RunRecord.of(sweep_parent_run(client, experiment_id, experiment, sweep))
    children = [
        RunRecord.of(run)
        for run in _search_all(
            client, experiment_id, f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.run_id}'"
        )
    ]
    trials = [run for run in children if run.tags.get(KIND_TAG) == "trial"]
    trials.sort(key=lambda run: natural_key(run.trial_name))
    baselines = [run for run in children if run.tags.get(KIND_TAG) == "baseline"]
    baselines.sort(key=lambda run: run.start_time or 0)
    finetuned = [run for run in children if run.tags.get(KIND_TAG) == FINETUNED_BASELINE_KIND]
    finetuned.sort(key=lambda run: run.start_time or 0)
    runs = SweepRuns(
        tracking_uri=tracking_uri,
        experiment_name=experiment,
        experiment_id=experiment_id,
        parent=parent,
        baseline=baselines[-1] if baselines else None,
        trials=trials,
        finetuned_baseline=finetuned[-1] if finetuned else None,
        config=read_config(client, parent.run_id),
    )
    # The name becomes folders (reports/, exports/, the storage path's): refused here, for
    # every reader, unless it is a plain folder name.
    plain_name(runs.name, "the tracking store's sweep name", ReportError)
    live = parent.status == "RUNNING" and driver_alive(parent.tags.get(DRIVER_TAG)) is not False
    if parent.status == "RUNNING" and not live:
        # The driver died (SIGKILL, a lost node) without ending its runs: an interrupted
        # sweep, which `launch --resume` takes over, not one still starting or running.
        runs = _as_interrupted(runs)
        trials = runs.trials
    if not trials:
        state = "is still starting" if live else "has no trial runs"
        raise ReportError(f"sweep {runs.name!r} {state}: nothing to report yet")
    if not any(VAL_ACC in run.metrics for run in trials):
        state = (
            "has trials that have not reported yet" if live else "ended before any trial reported"
        )
        raise ReportError(f"sweep {runs.name!r} {state}: nothing to report yet")
    return client, runs


def _as_interrupted(runs: SweepRuns) -> SweepRuns:
    def ended(run: RunRecord) -> RunRecord:
        return replace(run, status="KILLED") if run.status == "RUNNING" else run

    return replace(runs, parent=ended(runs.parent), trials=[ended(run) for run in runs.trials])


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) sorted by step, the last value logged for a step winning (a retried
    epoch is logged again)."""
    values: dict[int, float] = {}
    for metric in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        values[int(metric.step)] = float(metric.value)
    return sorted(values.items())


def trial_status(run: RunRecord) -> str:
    """completed, stopped_early or failed (as the sweep recorded it), else running or
    interrupted for a trial the sweep has not finished."""
    reason = run.tags.get(STOP_REASON_TAG)
    if reason in STOP_REASONS and run.status != "RUNNING":
        return reason
    return {"RUNNING": "running", "SCHEDULED": "running", "FAILED": "failed"}.get(
        run.status, "interrupted"
    )


def find_trial(runs: SweepRuns, wanted: str) -> RunRecord:
    """A trial by its Tune trial id (65e79_00003), trial name, MLflow run id or index (3)."""
    for run in runs.trials:
        names = {run.run_id, run.trial_name, run.tags.get(TRIAL_ID_TAG, "")}
        if wanted in names:
            return run
    if wanted.isdigit():
        matches = [
            run
            for run in runs.trials
            if trial_index(run.trial_name).lstrip("0") == wanted.lstrip("0")
        ]
        if len(matches) == 1:
            return matches[0]
    known = ", ".join(run.tags.get(TRIAL_ID_TAG, run.trial_name) for run in runs.trials[:12])
    raise ReportError(f"sweep {runs.name!r} has no trial {wanted!r}; its trials: {known}")
