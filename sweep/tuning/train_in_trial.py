"""A Ray Train run inside a Ray Tune trial, its reports and checkpoints relayed to Tune.

The pattern is Ray 2.60's for Tune + Train V2: a Tune function trainable that builds a
TorchTrainer and calls fit() (doc/source/train/user-guides/hyperparameter-optimization.rst),
with a Train callback on the run's controller that forwards each report to the trial. Ray's
own such callback, ray.tune.integration.ray_train.TuneReportCallback, forwards rank 0's
metrics only and leaves the checkpoint where Train stored it; a sweep needs it among the
trial's own Tune checkpoints, which a retry, `--resume`, Tune's best-checkpoint bookkeeping and
`export` read. So ReportRelay hands the trial both, and the trial reports them to Tune with the
checkpoint (Tune copies it into the trial's folder), then deletes Train's copy.

Ending a run with its trial: Ray Train removes its workers' placement group when the run ends,
and if its controller dies, its PlacementGroupCleaner does, after it sees the controller gone
through the State API (ray/train/v2/_internal/execution/controller/placement_group_cleaner.py).
That API needs Ray's dashboard, which a minimal Ray has not: when Tune stops a trial (ASHA)
and its actor, with the controller it owns, goes away, the workers' resources would stay held
until the sweep ends (and the detached cleaner would run on). So rank 0 tells the trial its
placement group at start, and the trainable's cleanup (which Tune runs, and waits for, before
it lets the actor go) removes it, as the cleaner would have, then waits for the run to end as a
run whose workers died does: its controller shuts down and stops its cleaner.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray
import ray.train
from ray import tune
from ray.train.v2.api.callback import UserCallback
from ray.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    remove_placement_group,
)
from ray.util.queue import Empty, Queue

from sweep.config import SweepConfig
from sweep.tuning.train_run import delete_checkpoint, delete_run, torch_trainer

if TYPE_CHECKING:
    from ray.train.v2._internal.execution.context import TrainRunContext

POLL_SECONDS = 0.5  # how often the trial looks whether its run has ended between reports
# How long a stopped trial waits for its run to end once its workers are gone: the controller
# notices at its next look at them (every 2 s by default) and then shuts down.
RELEASE_WAIT_S = 30.0


@dataclass(frozen=True)
class _WorkersPlaced:
    placement_group: PlacementGroup


@dataclass(frozen=True)
class _Report:
    metrics: dict[str, Any]  # rank 0's
    checkpoint: ray.train.Checkpoint | None  # on the Train run's storage


class ReportRelay(UserCallback):
    """On the Train run's controller: each report (every rank has reported) to the trial."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(
        self,
        run_context: TrainRunContext,
        metrics: list[dict[str, Any]],
        checkpoint: ray.train.Checkpoint | None,
    ) -> None:
        # Blocks while the trial has not taken the previous report, as TuneReportCallback's
        # one-slot queue does: the run goes no faster than Tune takes its results.
        self.queue.put(_Report(dict(metrics[0]), checkpoint))


def _worker(loop_config: dict[str, Any]) -> None:
    """Every rank: the trial's function, after rank 0 has told the trial where the run is."""
    if ray.train.get_context().get_world_rank() == 0:
        loop_config["queue"].put(_WorkersPlaced(get_current_placement_group()))
    function, config = ray.get(loop_config["work"])
    function(config)


class TrainRunInTrial:
    """One attempt of a multi-worker trial: a Train run whose reports become the trial's."""

    def __init__(self, config: SweepConfig, storage_path: str, name: str) -> None:
        self.config = config
        self.storage_path = storage_path
        self.name = name
        self.placement_group: PlacementGroup | None = None
        self._queue: Queue | None = None
        self._runner: threading.Thread | None = None

    def fit(self, function: Callable[[dict[str, Any]], None], loop_config: dict[str, Any]) -> None:
        """Run `function(loop_config)` on every worker; return when the run has ended, raise
        what ended it if it failed."""
        queue = self._queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
        # The function and its config reach the workers as one object: the run's controller,
        # which only schedules, then never unpickles them (nor imports Lightning for them).
        work = ray.put((function, loop_config))
        trainer = torch_trainer(
            self.config, _worker, {"queue": queue, "work": work},
            self.storage_path, self.name, callbacks=[ReportRelay(queue)],
        )  # fmt: skip
        outcome: dict[str, BaseException] = {}

        def run() -> None:
            try:
                trainer.fit()
            except BaseException as error:  # handed to the trial's thread, raised there
                outcome["error"] = error

        # fit() blocks until the run ends; the reports reach Tune from this (the trial's) thread.
        runner = self._runner = threading.Thread(target=run, name="train-run", daemon=True)
        with _live_lock:
            _live_runs.add(self)
        try:
            runner.start()
            self._relay(queue, runner)
            runner.join()
        finally:
            with _live_lock:
                _live_runs.discard(self)
            delete_run(self.storage_path, self.name)
        if "error" in outcome:
            raise outcome["error"]

    def _relay(self, queue: Queue, runner: threading.Thread) -> None:
        while runner.is_alive() or not queue.empty():
            try:
                item = queue.get(timeout=POLL_SECONDS)
            except Empty:
                continue
            if isinstance(item, _WorkersPlaced):
                self.placement_group = item.placement_group
                continue
            if item.checkpoint is None:
                tune.report(item.metrics)
                continue
            checkpoint = tune.Checkpoint(item.checkpoint.path, item.checkpoint.filesystem)
            tune.report(item.metrics, checkpoint=checkpoint)
            delete_checkpoint(item.checkpoint)

    def release(self) -> None:
        """The workers gone and their resources free, whatever the run was doing; then the
        run ended, if it does within RELEASE_WAIT_S."""
        if self.placement_group is not None:
            remove_placement_group(self.placement_group)
            self.placement_group = None
        runner, queue = self._runner, self._queue
        deadline = time.monotonic() + RELEASE_WAIT_S
        while runner is not None and queue is not None and runner.is_alive():
            if time.monotonic() > deadline:
                break
            # A controller waiting to hand this trial a report could not notice anything:
            # the reports nobody will take now are dropped.
            with contextlib.suppress(Empty):
                queue.get(timeout=POLL_SECONDS)
        delete_run(self.storage_path, self.name)


# The runs of this process (a trial's actor runs one trial), seen by the trial's thread and by
# the cleanup Tune calls from the actor's main thread.
_live_runs: set[TrainRunInTrial] = set()
_live_lock = threading.Lock()


class ReleasesTrainWorkers:
    """Mixin of the multi-worker trainable (Tune's `__mixins__`): its cleanup, which Tune
    calls when it stops the trial, first releases the workers of a run still going."""

    def cleanup(self) -> None:
        with _live_lock:
            runs = list(_live_runs)
        for run in runs:
            run.release()
        super().cleanup()  # type: ignore[misc]
