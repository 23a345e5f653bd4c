"""MLflow writes that survive an outage of the tracking server.

Every write of a trial's run is queued, in order, and sent at once when the server answers.
While it does not, writes stay queued (and travel with Tune's experiment checkpoint, so a
resumed sweep still has them) and are retried every `retry_interval` seconds; metrics keep the
step and the timestamp of when they were reported, so a late write records the same history.
When the server returns, everything reported meanwhile is recorded: nothing is lost, and
nothing is written twice, because opening a trial's run first looks for the run that trial
already has.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweep.errors import first_line
from sweep.tracking.names import KIND_TAG, TRIAL_ID_TAG
from sweep.tracking.redact import redact

logger = logging.getLogger(__name__)

# What an unreachable store raises: MLflow's REST client wraps every error of its HTTP requests
# (refused, reset, timed out) in MlflowException; a local store raises OSError.
OUTAGE_ERRORS = (MlflowException, OSError)


@dataclass
class Write:
    """One queued operation on the run of `trial_id`."""

    op: str  # open | metrics | tags | end
    trial_id: str
    payload: dict[str, Any]


@dataclass
class OutboxState:
    pending: list[Write] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)  # trial id -> MLflow run id


class MlflowOutbox:
    """Ordered, retried writes of the trial runs under one sweep's parent run."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        retry_interval: float = 10.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.retry_interval = retry_interval
        self.state = OutboxState()
        self._next_attempt = 0.0
        self._warned = False

    # ---- queueing ----------------------------------------------------------------------------

    def open_run(
        self, trial_id: str, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> None:
        payload = {"run_name": run_name, "params": {k: str(v) for k, v in params.items()},
                   "tags": dict(tags)}  # fmt: skip
        self.state.pending.append(Write("open", trial_id, payload))

    def log_metrics(self, trial_id: str, metrics: Mapping[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        values = {key: float(value) for key, value in metrics.items()}
        self.state.pending.append(
            Write("metrics", trial_id, {"metrics": values, "step": step, "timestamp": stamp})
        )

    def set_tags(self, trial_id: str, tags: Mapping[str, str]) -> None:
        self.state.pending.append(Write("tags", trial_id, {"tags": dict(tags)}))

    def end_run(self, trial_id: str, failed: bool) -> None:
        status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
        self.state.pending.append(
            Write("end", trial_id, {"status": status, "time": int(time.time() * 1000)})
        )

    def run_id(self, trial_id: str) -> str | None:
        return self.state.run_ids.get(trial_id)

    # ---- sending -----------------------------------------------------------------------------

    def flush(self, wait: float = 0.0) -> bool:
        """Send what is queued; True when the queue is empty. During an outage this returns
        at once until `retry_interval` has passed, unless `wait` (seconds) asks to keep
        trying."""
        deadline = time.monotonic() + wait
        while True:
            if time.monotonic() >= self._next_attempt or wait > 0:
                try:
                    self._send_pending()
                except OUTAGE_ERRORS as error:
                    self._outage(error)
                else:
                    if self._warned:
                        logger.warning("MLflow is reachable again: queued writes recorded")
                        self._warned = False
                    return True
            if time.monotonic() >= deadline:
                return not self.state.pending
            time.sleep(min(self.retry_interval, max(0.0, deadline - time.monotonic()), 2.0))

    def _outage(self, error: BaseException) -> None:
        self._next_attempt = time.monotonic() + self.retry_interval
        if not self._warned:
            logger.warning(
                "MLflow at %s is unreachable (%s); %d writes queued, retrying every %.0f s",
                redact(self.tracking_uri), redact(first_line(error))[:200],
                len(self.state.pending), self.retry_interval,
            )  # fmt: skip
            self._warned = True

    def _send_pending(self) -> None:
        client = MlflowClient(tracking_uri=self.tracking_uri)
        while self.state.pending:
            write = self.state.pending[0]
            getattr(self, f"_send_{write.op}")(client, write)
            self.state.pending.pop(0)  # only once it went through

    def _send_open(self, client: MlflowClient, write: Write) -> None:
        run_id = self.state.run_ids.get(write.trial_id) or self.find_run(client, write.trial_id)
        if run_id is None:
            tags = {MLFLOW_PARENT_RUN_ID: self.parent_run_id, KIND_TAG: "trial",
                    TRIAL_ID_TAG: write.trial_id, **write.payload["tags"]}  # fmt: skip
            run = client.create_run(
                self.experiment_id, run_name=write.payload["run_name"], tags=tags
            )
            run_id = run.info.run_id
        else:
            # A retried or resumed trial continues its run (ended as FAILED by an earlier
            # attempt, or KILLED when the sweep was interrupted).
            client.update_run(run_id, status="RUNNING")
        self.state.run_ids[write.trial_id] = run_id
        # Logging the same params again is a no-op, so a retry after a half-done open is safe.
        params = [Param(k, v) for k, v in write.payload["params"].items()]
        client.log_batch(run_id, params=params)

    def find_run(self, client: MlflowClient, trial_id: str) -> str | None:
        """The run a trial already has under this sweep, if any."""
        runs = client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}' AND "
                f"tags.`{TRIAL_ID_TAG}` = '{trial_id}'"
            ),
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def _send_metrics(self, client: MlflowClient, write: Write) -> None:
        payload = write.payload
        metrics = [Metric(key, value, payload["timestamp"], payload["step"])
                   for key, value in payload["metrics"].items()]  # fmt: skip
        client.log_batch(self.state.run_ids[write.trial_id], metrics=metrics)

    def _send_tags(self, client: MlflowClient, write: Write) -> None:
        for key, value in write.payload["tags"].items():
            client.set_tag(self.state.run_ids[write.trial_id], key, value)

    def _send_end(self, client: MlflowClient, write: Write) -> None:
        client.set_terminated(
            self.state.run_ids[write.trial_id],
            status=write.payload["status"],
            end_time=write.payload["time"],
        )
