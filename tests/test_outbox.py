"""MlflowOutbox on its own, against a real `mlflow server` on 127.0.0.1 that is stopped and
started again: writes queued during the outage reach MLflow in order, with the steps and
timestamps they were reported with, exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support.mlflow_server import MlflowServer

from sweep.tracking.names import KIND_TAG, STOP_REASON_TAG, TRIAL_ID_TAG
from sweep.tracking.outbox import MlflowOutbox

pytestmark = pytest.mark.slow
RETRY_INTERVAL_S = 1.0


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowServer]:
    # A dead server must fail a request at once, as the launcher arranges for a sweep.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    running = MlflowServer(tmp_path / "mlflow")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float, int]]:
    """(step, value, timestamp) of every recorded value, in the order MLflow returns them."""
    return sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))


def test_writes_queued_in_an_outage_are_replayed_in_order_exactly_once(server: MlflowServer):
    client = MlflowClient(tracking_uri=server.uri)
    experiment_id = client.create_experiment("outbox")
    parent = client.create_run(experiment_id, run_name="sweep").info.run_id
    outbox = MlflowOutbox(server.uri, experiment_id, parent, retry_interval=RETRY_INTERVAL_S)

    outbox.open_run("t1", "trial one", {"lr": 0.1, "ranks/conv": "4x4x3"}, {"trial_name": "t1"})
    outbox.log_metrics("t1", {"val_acc": 0.5, "val_loss": 1.2}, step=1)
    assert outbox.flush() and not outbox.state.pending
    run_one = outbox.run_id("t1")
    assert run_one is not None

    server.stop()
    outbox.log_metrics("t1", {"val_acc": 0.6, "val_loss": 1.0}, step=2)
    time.sleep(0.01)  # distinct timestamps, so that the order of the replay shows
    outbox.open_run("t2", "trial two", {"lr": 0.2}, {"trial_name": "t2"})
    outbox.log_metrics("t2", {"val_acc": 0.7}, step=1)
    outbox.log_metrics("t1", {"best_val_acc": 0.6}, step=2)
    outbox.set_tags("t1", {STOP_REASON_TAG: "completed"})
    outbox.end_run("t1", failed=False)
    started = time.monotonic()
    assert not outbox.flush(), "a dead server cannot have taken the writes"
    assert time.monotonic() - started < 30, "an outage must not stall the sweep"
    queued = [(write.op, write.trial_id) for write in outbox.state.pending]
    assert queued == [
        ("metrics", "t1"), ("open", "t2"), ("metrics", "t2"), ("metrics", "t1"),
        ("tags", "t1"), ("end", "t1"),
    ]  # fmt: skip
    reported = {
        (write.trial_id, key): (write.payload["step"], value, write.payload["timestamp"])
        for write in outbox.state.pending
        if write.op == "metrics"
        for key, value in write.payload["metrics"].items()
    }
    # Within the retry interval a flush does not even try.
    started = time.monotonic()
    assert not outbox.flush() and time.monotonic() - started < 1.0

    server.start()
    assert outbox.flush(wait=60), "the queued writes were not sent once the server was back"
    assert not outbox.state.pending
    assert outbox.flush()  # nothing left: a second flush sends nothing again

    runs = client.search_runs([experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'trial'")
    by_trial = {run.data.tags[TRIAL_ID_TAG]: run for run in runs}
    assert sorted(by_trial) == ["t1", "t2"], "one run per trial, none created twice"
    one, two = by_trial["t1"], by_trial["t2"]
    assert one.info.run_id == run_one
    assert one.data.tags["mlflow.parentRunId"] == two.data.tags["mlflow.parentRunId"] == parent
    assert one.data.params == {"lr": "0.1", "ranks/conv": "4x4x3"}
    assert (one.info.status, two.info.status) == ("FINISHED", "RUNNING")
    assert one.data.tags[STOP_REASON_TAG] == "completed"

    # Every value once, at the step and with the timestamp it was reported with.
    assert _history(client, run_one, "val_acc")[0][:2] == (1, 0.5)
    assert _history(client, run_one, "val_acc")[1:] == [reported[("t1", "val_acc")]]
    assert _history(client, run_one, "val_loss")[1:] == [reported[("t1", "val_loss")]]
    assert _history(client, run_one, "best_val_acc") == [reported[("t1", "best_val_acc")]]
    assert _history(client, two.info.run_id, "val_acc") == [reported[("t2", "val_acc")]]
    # ... and in the order reported: the run ended after its last metric was written.
    assert one.info.end_time >= reported[("t1", "best_val_acc")][2]

    # A retried trial opens its run again: the same run, running again, params unchanged.
    outbox.open_run("t1", "trial one", {"lr": 0.1, "ranks/conv": "4x4x3"}, {"trial_name": "t1"})
    assert outbox.flush()
    assert outbox.run_id("t1") == run_one
    assert client.get_run(run_one).info.status == "RUNNING"
    assert len(client.search_runs([experiment_id], f"tags.`{KIND_TAG}` = 'trial'")) == 2


def test_a_trial_opened_again_by_a_new_driver_finds_its_run(server: MlflowServer):
    """A driver that lost the outbox's state (killed, then resumed) looks the run up by its
    trial id instead of creating a second one."""
    client = MlflowClient(tracking_uri=server.uri)
    experiment_id = client.create_experiment("outbox")
    parent = client.create_run(experiment_id, run_name="sweep").info.run_id
    first = MlflowOutbox(server.uri, experiment_id, parent, retry_interval=RETRY_INTERVAL_S)
    first.open_run("t1", "trial one", {"lr": 0.1}, {})
    first.log_metrics("t1", {"val_acc": 0.5}, step=1)
    assert first.flush()

    second = MlflowOutbox(server.uri, experiment_id, parent, retry_interval=RETRY_INTERVAL_S)
    second.open_run("t1", "trial one", {"lr": 0.1}, {})
    second.log_metrics("t1", {"val_acc": 0.6}, step=2)
    assert second.flush()
    assert second.run_id("t1") == first.run_id("t1")
    runs = client.search_runs([experiment_id], f"tags.`{KIND_TAG}` = 'trial'")
    assert len(runs) == 1
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_acc")] == [1, 2]
