"""MLflow layout of a sweep, written from the driver only.

    experiment
      sweep parent run            tags tucker_sweep.kind=sweep, tucker_sweep.sweep=<name>
        artifacts: config.yaml, seed.json, spectra.png, report files
        baseline child run        the dense model: per-epoch metrics, cost figures
        trial child runs          one per Tune trial (tag tucker_sweep.trial_id), never two

Trial runs are written by `TrialRunsCallback`, a subclass of Ray's MLflowLoggerCallback: on the
driver, so workers need no MLflow access and a crashing trial loses nothing already reported.
A trial keeps one run across retries and across a resumed sweep: the run is found again by its
trial id before a new one is created. Writes go through an outbox (sweep/mlflow_outbox.py): if
the tracking server is down, the sweep goes on and what it reported meanwhile is recorded, with
its original steps and timestamps, when the server is back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray.air.integrations.mlflow import MLflowLoggerCallback

from sweep.errors import TrackingError
from sweep.mlflow_outbox import OUTAGE_ERRORS, MlflowOutbox, OutboxState
from sweep.run_tags import (
    EPOCH_METRICS,
    KIND_TAG,
    NODES_TAG,
    SECONDS_METRIC,
    STOP_REASON_TAG,
    SWEEP_TAG,
)

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)


def tracking_client(uri: str) -> MlflowClient:
    """A client for `uri`, checked to answer: an unreachable server fails here, in one line,
    rather than in the middle of a sweep."""
    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except (MlflowException, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TrackingError(f"MLflow tracking store {uri} is unreachable: {first_line}") from None
    return client


def experiment_id_for(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name)


def _params(values: Mapping[str, Any]) -> list[Param]:
    # MLflow caps a param value at 6000 characters; ours are short.
    return [Param(key, str(value)) for key, value in values.items()]


def _metrics(values: Mapping[str, float], step: int, timestamp: int) -> list[Metric]:
    return [Metric(key, float(value), timestamp, step) for key, value in values.items()]


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
    cost_metrics: Mapping[str, float],
    target_accuracy: float,
    parent_run_id: str | None = None,
) -> str:
    """The dense baseline as a run (a child of the sweep when there is one): per-epoch
    metrics and the same final metrics as a trial, so reports compare like with like."""
    tags = {KIND_TAG: "baseline"}
    if parent_run_id is not None:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run_id = client.create_run(experiment_id, run_name="baseline", tags=tags).info.run_id
    log_epoch_history(client, run_id, history)
    epochs = {int(row["epoch"]): (row.get("val_acc", math.nan), row.get(SECONDS_METRIC, math.nan))
              for row in history}  # fmt: skip
    last = len(history)
    final = {
        **cost_metrics,
        **convergence_metrics(epochs, target_accuracy),
        "epochs_run": last,
        "stopped_early": 0.0,
        "wall_seconds": epochs[last][1] if last else math.nan,
    }
    log_final_metrics(client, run_id, final, last)
    return run_id


@dataclass
class TrialProgress:
    """What the driver has seen of one trial: enough to compute its final metrics."""

    epochs: dict[int, tuple[float, float]] = field(default_factory=dict)  # epoch -> (acc, s)
    last_epoch: int = 0
    nodes: set[str] = field(default_factory=set)  # IPs of the nodes that ran it
    static_metrics: dict[str, float] = field(default_factory=dict)  # params, flops, compression


def convergence_metrics(
    epochs: Mapping[int, tuple[float, float]], target_accuracy: float
) -> dict[str, float]:
    """best_val_acc, epochs_to_target, seconds_to_target (NaN when never reached)."""
    best = max((acc for acc, _ in epochs.values()), default=float("nan"))
    reached = [(epoch, seconds) for epoch, (acc, seconds) in sorted(epochs.items())
               if acc >= target_accuracy]  # fmt: skip
    epoch, seconds = reached[0] if reached else (math.nan, math.nan)
    return {"best_val_acc": best, "epochs_to_target": epoch, "seconds_to_target": seconds}


class TrialRunsCallback(MLflowLoggerCallback):
    """One MLflow child run per Tune trial, under the sweep's parent run.

    Extends Ray's MLflowLoggerCallback (its setup creates or finds the experiment) with: the
    parent link, per-epoch metrics with step = epoch, final metrics at the end of a trial
    (params, flops, compression, best_val_acc, epochs_to_target, seconds_to_target,
    epochs_run, stopped_early, wall_seconds), one run per trial across retries and resumes,
    and writes that survive a tracking-server outage (see MlflowOutbox). Its state travels
    in Tune's experiment checkpoint, so a resumed sweep continues where it was.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        parent_run_id: str,
        max_epochs: int,
        target_accuracy: float,
        trial_params: Any,
        retry_interval: float = 10.0,
    ) -> None:
        super().__init__(tracking_uri=tracking_uri, experiment_name=experiment_name)
        self.parent_run_id = parent_run_id
        self.max_epochs = max_epochs
        self.target_accuracy = target_accuracy
        # trial config -> (params to log, static metrics); a picklable callable
        self.trial_params = trial_params
        self.retry_interval = retry_interval
        self._progress: dict[str, TrialProgress] = {}
        self._outbox_state = OutboxState()
        self._outbox: MlflowOutbox | None = None

    def setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)
        self._outbox = MlflowOutbox(
            self.tracking_uri, self.mlflow_util.experiment_id, self.parent_run_id,
            self.retry_interval,
        )  # fmt: skip
        self._outbox.state = self._outbox_state

    def get_state(self) -> dict[str, Any]:
        return {"progress": self._progress, "outbox": self._outbox_state}

    def set_state(self, state: dict[str, Any]) -> None:
        self._progress = dict(state.get("progress", {}))
        self._outbox_state = state.get("outbox", OutboxState())
        if self._outbox is not None:
            self._outbox.state = self._outbox_state

    @property
    def outbox(self) -> MlflowOutbox:
        assert self._outbox is not None, "setup() has not run"
        return self._outbox

    def _recorded_history(self, trial: Trial) -> TrialProgress:
        """Per-epoch accuracy already in MLflow for a trial this driver has not seen (its
        state was lost with a killed driver); empty when MLflow cannot say."""
        progress = TrialProgress()
        try:
            run_id = self.outbox.run_id(trial.trial_id) or self.outbox.find_run(
                MlflowClient(tracking_uri=self.tracking_uri), trial.trial_id
            )
            if run_id is None:
                return progress
            client = MlflowClient(tracking_uri=self.tracking_uri)
            seconds = {m.step: m.value for m in
                       client.get_metric_history(run_id, SECONDS_METRIC)}  # fmt: skip
            for metric in client.get_metric_history(run_id, "val_acc"):
                progress.epochs[metric.step] = (metric.value, seconds.get(metric.step, math.nan))
        except OUTAGE_ERRORS:
            return progress
        progress.last_epoch = max(progress.epochs, default=0)
        return progress

    def log_trial_start(self, trial: Trial) -> None:
        # Also on a retry or a resume: epochs MLflow already holds (reported before a killed
        # driver's last checkpoint of this state) are not logged a second time when a trial
        # re-runs them from an earlier checkpoint.
        progress = self._progress.setdefault(trial.trial_id, TrialProgress())
        recorded = self._recorded_history(trial)
        for epoch, values in recorded.epochs.items():
            progress.epochs.setdefault(epoch, values)
        progress.last_epoch = max(progress.last_epoch, recorded.last_epoch)
        # Pricing a plan builds the model: done once per trial, kept for its final metrics.
        params, progress.static_metrics = self.trial_params(trial.config)
        self.outbox.open_run(trial.trial_id, str(trial), params, {"trial_name": str(trial)})
        self.outbox.flush()

    def log_trial_result(self, iteration: int, trial: Trial, result: dict) -> None:
        progress = self._progress[trial.trial_id]
        epoch = int(result["training_iteration"])
        if result.get("node_ip"):
            progress.nodes.add(str(result["node_ip"]))
        if epoch in progress.epochs:
            return  # an epoch re-run after a failure: its first report stays the record
        values = {key: result[key] for key in EPOCH_METRICS if key in result}
        values[SECONDS_METRIC] = result.get("time_total_s", math.nan)
        self.outbox.log_metrics(trial.trial_id, values, step=epoch)
        progress.epochs[epoch] = (
            float(values.get("val_acc", math.nan)),
            float(values[SECONDS_METRIC]),
        )
        progress.last_epoch = max(progress.last_epoch, epoch)
        self.outbox.flush()

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        progress = self._progress[trial.trial_id]
        static_metrics = progress.static_metrics or self.trial_params(trial.config)[1]
        stopped_early = not failed and progress.last_epoch < self.max_epochs
        last = progress.epochs.get(progress.last_epoch)
        final = {
            **static_metrics,
            **convergence_metrics(progress.epochs, self.target_accuracy),
            "epochs_run": progress.last_epoch,
            "stopped_early": float(stopped_early),
            "wall_seconds": last[1] if last else math.nan,
        }
        reason = "failed" if failed else ("stopped_early" if stopped_early else "completed")
        self.outbox.log_metrics(trial.trial_id, final, step=progress.last_epoch)
        tags = {STOP_REASON_TAG: reason, NODES_TAG: ",".join(sorted(progress.nodes))}
        self.outbox.set_tags(trial.trial_id, tags)
        self.outbox.end_run(trial.trial_id, failed)
        self.outbox.flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Give a server that is still down a while to come back before the sweep ends; what
        # is still queued then stays in the experiment state for a resume to send.
        if not self.outbox.flush(wait=self.flush_wait):
            logger.warning(
                "MLflow still unreachable: %d writes not recorded; they are kept with the "
                "sweep and sent by `tucker-sweep launch --resume`",
                len(self.outbox.state.pending),
            )

    flush_wait = 120.0


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


def finish_run(client: MlflowClient, run_id: str, failed: bool = False) -> None:
    status = RunStatus.FAILED if failed else RunStatus.FINISHED
    client.set_terminated(run_id, status=RunStatus.to_string(status))
