"""One MLflow child run per Ray Tune trial, written from the driver: the one module of
sweep.tracking that imports Ray.

On the driver, workers need no MLflow access and a crashing trial loses nothing already
reported. A trial keeps one run across retries and across a resumed sweep: the run is found
again by its trial id before a new one is created. Writes go through the outbox (outbox.py): if
the tracking server is down, the sweep goes on and what it reported meanwhile is recorded, with
its original steps and timestamps, when the server is back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow.tracking import MlflowClient
from ray.tune.logger import LoggerCallback

from sweep.tracking.convergence import final_metrics
from sweep.tracking.names import (
    EPOCH_METRICS,
    NODES_TAG,
    SECONDS_METRIC,
    STOP_REASON_TAG,
    SWEEP_TAG,
    TEST_ACC_METRIC,
    TRIAL_NAME_TAG,
    is_speed_metric,
    trial_index,
)
from sweep.tracking.outbox import OUTAGE_ERRORS, MlflowOutbox, OutboxState
from sweep.tracking.redact import recall_uri, redact, remember_uri

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

# A trial's Tune config -> (params to log, static cost metrics); picklable, since Tune stores
# the callback in its experiment state.
DescribeTrial = Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, float]]]


@dataclass
class TrialProgress:
    """What the driver has seen of one trial: enough to compute its final metrics."""

    epochs: dict[int, tuple[float, float]] = field(default_factory=dict)  # epoch -> (acc, s)
    last_epoch: int = 0
    nodes: set[str] = field(default_factory=set)  # IPs of the nodes that ran it
    static_metrics: dict[str, float] = field(default_factory=dict)  # params, flops, compression
    speed_logged: bool = False  # the measured speed (in every result) is logged once


def trial_run_name(trial_name: str, compression: float | None) -> str:
    """What the MLflow UI's runs table shows for a trial: '00008 · 1.60x', its index in the
    sweep and its compression (Tune's own name, run_trial_972eb_00008, stays as a tag)."""
    index = trial_index(trial_name)
    return index if compression is None else f"{index} · {compression:.2f}x"


class TrialRunsCallback(LoggerCallback):
    """One MLflow child run per Tune trial, under the sweep's parent run.

    Records the parent link, per-epoch metrics with step = epoch, and when a trial ends its
    final metrics (sweep.tracking.names.FINAL_METRICS) and how it ended. Built on Ray's public
    LoggerCallback rather than its MLflowLoggerCallback, whose every logging hook this would
    replace: what it adds (one global MLflow run per trial, set up through a private helper) is
    what this layout does differently. Its state travels in Tune's experiment checkpoint, so a
    resumed sweep continues where it was.
    """

    flush_wait = 120.0  # seconds a still-down server is waited for when the sweep ends

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        max_epochs: int,
        target_accuracy: float,
        describe_trial: DescribeTrial,
        retry_interval: float = 10.0,
        sweep_name: str = "",
    ) -> None:
        self.tracking_uri = tracking_uri
        remember_uri(tracking_uri)  # for a copy of this callback restored from its pickle
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.max_epochs = max_epochs
        self.target_accuracy = target_accuracy
        self.describe_trial = describe_trial
        self.retry_interval = retry_interval
        self.sweep_name = sweep_name
        self._progress: dict[str, TrialProgress] = {}
        self._outbox_state = OutboxState()
        self._outbox: MlflowOutbox | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles this callback into tuner.pkl, in the sweep's storage: no credential
        # goes there. The outbox is rebuilt by setup().
        return {**self.__dict__, "tracking_uri": redact(self.tracking_uri), "_outbox": None}

    def setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)
        # Restored from tuner.pkl (a resumed sweep), this callback holds the redacted URI: the
        # driver restoring it remembered the real one.
        self.tracking_uri = recall_uri(self.tracking_uri)
        self._outbox = MlflowOutbox(
            self.tracking_uri, self.experiment_id, self.parent_run_id, self.retry_interval
        )
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
            client = MlflowClient(tracking_uri=self.tracking_uri)
            run_id = self.outbox.run_id(trial.trial_id) or self.outbox.find_run(
                client, trial.trial_id
            )
            if run_id is None:
                return progress
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
        params, progress.static_metrics = self.describe_trial(trial.config)
        name = trial_run_name(str(trial), progress.static_metrics.get("compression"))
        tags = {TRIAL_NAME_TAG: str(trial), SWEEP_TAG: self.sweep_name}
        self.outbox.open_run(trial.trial_id, name, params, tags)
        self.outbox.flush()

    def log_trial_result(self, iteration: int, trial: Trial, result: dict) -> None:
        progress = self._progress[trial.trial_id]
        epoch = int(result["training_iteration"])
        if result.get("node_ip"):
            progress.nodes.add(str(result["node_ip"]))
        if epoch in progress.epochs:
            return  # an epoch re-run after a failure: its first report stays the record
        values = {key: result[key] for key in (*EPOCH_METRICS, TEST_ACC_METRIC) if key in result}
        values[SECONDS_METRIC] = result.get("time_total_s", math.nan)
        if not progress.speed_logged:
            values.update({key: value for key, value in result.items() if is_speed_metric(key)})
            progress.speed_logged = True
        self.outbox.log_metrics(trial.trial_id, values, step=epoch)
        progress.epochs[epoch] = (
            float(values.get("val_acc", math.nan)),
            float(values[SECONDS_METRIC]),
        )
        progress.last_epoch = max(progress.last_epoch, epoch)
        self.outbox.flush()

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        progress = self._progress[trial.trial_id]
        static_metrics = progress.static_metrics or self.describe_trial(trial.config)[1]
        stopped_early = not failed and progress.last_epoch < self.max_epochs
        final = final_metrics(
            progress.epochs, progress.last_epoch, self.target_accuracy, static_metrics,
            stopped_early,
        )  # fmt: skip
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
