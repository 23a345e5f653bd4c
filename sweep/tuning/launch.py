"""Launch or resume a sweep: Ray (local on loopback, or a cluster), the dense baseline and the
seed, then a Tuner with ASHA over the rank space, every trial recorded in MLflow, and the
report at the end (docs/design.md, "Data flow of a sweep")."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
import yaml
from mlflow.tracking import MlflowClient
from ray import tune
from torch import nn

from lightning_modules.data import DataShape
from lightning_modules.inference.latency_table import LatencyTable
from lightning_modules.nets import (
    ConvLayer,
    conv_layers,
    input_sizes,
    skipped_convs,
)
from lightning_modules.nets.pretrained import fit_problem
from sweep.builders import checkpoint_weights, dense_model, sweep_datamodule
from sweep.config import SweepConfig
from sweep.errors import ConfigError, SweepInterrupted, TuckerSweepError
from sweep.report.write import write_sweep_report
from sweep.seeding.deployment import LATENCY_FILE, deploy_params
from sweep.seeding.seed import SEED_FILE
from sweep.seeding.seed_file import read_seed
from sweep.space import RankSpace, build_rank_space, describe, per_layer_sizes, select_layers
from sweep.stop_signals import StopRequested, StopSignals, exit_status, signal_name
from sweep.sweep_files.lock import sweep_lock
from sweep.sweep_files.trust import check_restorable
from sweep.tracking.client import experiment_id_for, tracking_client
from sweep.tracking.driver import DRIVER_TAG, driver_identity
from sweep.tracking.layout import (
    SKIPPED_IMAGES_FILE,
    SweepTracking,
    end_unfinished_trial_runs,
    find_sweep_run,
    log_skipped_images,
    runs_ended_on_error,
    start_sweep_run,
)
from sweep.tracking.names import CONFIG_ARTIFACT, EXPERIMENT_PATH_TAG
from sweep.tracking.redact import redact, redact_values, without_tracking_credentials
from sweep.tracking.tune_callback import TrialRunsCallback
from sweep.tuning.baseline_step import BaselineStep
from sweep.tuning.cluster import check_cluster_resources, connect_ray, shut_down_ray
from sweep.tuning.front_evaluation import evaluate_front
from sweep.tuning.progress import ProgressCallback, SweepProgress, set_display
from sweep.tuning.results import finished_trials
from sweep.tuning.storage import SweepStore
from sweep.tuning.train_run import train_runs_path
from sweep.tuning.train_workers import check_worker_split
from sweep.tuning.trainable import TrialCallbackFactory, TrialSetup
from sweep.tuning.trial_describer import TrialDescriber
from sweep.tuning.tune_space import param_space, trial_count
from sweep.tuning.tuner import make_tuner

MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
Progress = Callable[[str], None]
ShowProgress = Callable[[SweepProgress], None]


@dataclass(frozen=True)
class SweepOutcome:
    name: str
    experiment_path: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    ray: str
    num_trials: int
    num_errors: int
    best_val_acc: float | None
    best_params: dict[str, Any] | None
    seconds: float
    space_size: int | None  # None: budget mode (a continuous target)
    unseeded_space_size: int  # plans of mode per_layer without a seed
    baseline_val_acc: float | None
    # A stop signal that arrived while Ray shut down after the sweep had ended (exit 128 + it).
    stopped_by: int | None = None


@dataclass(frozen=True)
class _Inputs:
    """What the config's data and model say, checked before anything is recorded."""

    shape: DataShape
    layers: tuple[ConvLayer, ...]
    input_hw: dict[str, tuple[int, int]]  # of each conv, for FLOPs budgets
    pretrained: dict[str, torch.Tensor] | None = None  # model.checkpoint, matched to the model
    skipped: tuple[str, ...] = ()  # grouped / depthwise convs: they stay dense
    # Unreadable images the data module left out (None: one that never skips any).
    skipped_images: tuple[str, ...] | None = None


def inspect_inputs(config: SweepConfig) -> _Inputs:
    """The data's shape, the model's decomposable convs and the given weights, if any:
    bad names, a model that does not fit the data and weights that do not fit the model
    fail here, in one line, before anything is recorded or trained."""
    check_worker_split(config)
    datamodule = sweep_datamodule(config)
    shape = DataShape.of(datamodule)
    dense = dense_model(config, shape)
    problem = fit_problem(dense, shape.input_shape, shape.num_classes)
    if problem:
        raise ConfigError(f"model {config.model.spec} does not fit {config.data.name}: {problem}")
    pretrained = checkpoint_weights(config, dense)
    layers = tuple(conv_layers(dense))
    select_layers(config, layers)
    input_hw = input_sizes(dense, shape.input_shape, nn.Conv2d)
    skipped_images = getattr(datamodule, "skipped_images", None)
    return _Inputs(
        shape, layers, input_hw, pretrained, tuple(skipped_convs(dense)),
        None if skipped_images is None else tuple(skipped_images),
    )  # fmt: skip


def configure_driver() -> None:
    """Process settings of the driver during a sweep."""
    # The driver's own work (rank analysis, bookkeeping) is light, and trials occupy the
    # cores: with more than one intra-op thread, torch's spinning OpenMP workers fight the
    # trials and a 128x1152 SVD took 1.5 s instead of 13 ms on a busy 2-core machine.
    torch.set_num_threads(1)
    # Keeping few checkpoints makes Tune snapshot its (small) experiment state whenever a
    # trial checkpoints, and warn about it every few seconds; the snapshot costs ~10 ms.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # MLflow's REST client retries a dead server for minutes by default (7 retries with
    # exponential backoff), which would freeze Tune's loop on every write during an outage;
    # the trial-run outbox retries on its own schedule instead.
    for variable, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(variable, value)


class SweepLauncher:
    """The steps of a sweep, in order; `run` wires them."""

    def __init__(
        self,
        config: SweepConfig,
        progress: Progress,
        trial_callbacks: Sequence[TrialCallbackFactory] = (),
        show_progress: ShowProgress | None = None,
        verbose: bool = False,
    ) -> None:
        self.config = config
        self.progress = progress
        self.trial_callbacks = tuple(trial_callbacks)
        self.show_progress = show_progress
        self.verbose = verbose
        self.store = SweepStore(config.cluster.storage_path, config.name)
        self.tracking_uri = config.tracking.resolved_uri()
        self.stop_signals = StopSignals()

    def run(self, resume: bool) -> SweepOutcome:
        self.stop_signals.install()
        owns_ray = not ray.is_initialized()
        outcome = None
        try:
            outcome = self._run(resume)
        except KeyboardInterrupt as stop:
            # A StopRequested from our handler, or the plain KeyboardInterrupt that Ray's
            # blocking calls (ray.get) raise in its place.
            signum = stop.signum if isinstance(stop, StopRequested) else self.stop_signals.received
            raise self._interrupted(None, None, signum) from None
        finally:
            # Ray started here stops here, not at interpreter exit (see shut_down_ray).
            late_signal = shut_down_ray(self.stop_signals, self.progress) if owns_ray else None
            self.stop_signals.restore()
        if late_signal is not None:
            outcome = dataclasses.replace(outcome, stopped_by=late_signal)
        return outcome

    def _interrupted(
        self, finished: int | None, expected: int | None, signum: int | None
    ) -> SweepInterrupted:
        """The error that ends an interrupted sweep: what was done and how to continue."""
        done = "" if finished is None else f" after {finished} of {expected} trials"
        resumable = self.store.exists()
        hint = (
            f"; continue it with: tucker-sweep launch --resume {self.config.name} "
            f"--storage-path {self.store.storage_path}"
            if resumable
            else "; nothing was recorded"
        )
        status = exit_status(signum) if signum is not None else 130
        by = f" by {signal_name(signum)}" if signum is not None else ""
        return SweepInterrupted(f"sweep {self.config.name!r} interrupted{by}{done}{hint}", status)

    def _run(self, resume: bool) -> SweepOutcome:
        started = time.perf_counter()
        config = self.config
        configure_driver()
        if not self.verbose:
            # Tune's new console output prints an experiment header even when silent; its
            # legacy reporter at verbose=0 prints nothing (a documented switch).
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Everything that can be wrong with the input is checked before anything is recorded.
        self.check_new_or_resumable(resume)
        inputs = self._inspect_inputs()
        client = tracking_client(self.tracking_uri)
        ray_description = self._connect()
        tracking = self._open_tracking(client, resume)
        # Ray gets the config without the tracking credentials: only this driver logs.
        shared = without_tracking_credentials(config)
        with runs_ended_on_error(tracking):
            log_skipped_images(client, tracking.parent_run_id, inputs.skipped_images)
            baseline_state, baseline_acc = BaselineStep(shared, self.store, self.progress).run(
                tracking, inputs.shape, inputs.pretrained,
                select_layers(config, inputs.layers), inputs.input_hw,
            )  # fmt: skip
            space, unseeded = self._rank_space(inputs)
            setup = TrialSetup(
                shared, space, inputs.shape, baseline_state, self.trial_callbacks,
                train_runs_path(self.store.experiment_path),
            )  # fmt: skip
            results, finished, expected = self._fit(tracking, setup)
            if finished == expected:
                evaluate_front(config, self.store.experiment_path, self.progress)
            self._write_report(tracking.parent_run_id)
        if finished < expected:
            raise self._interrupted(finished, expected, self.stop_signals.received)
        best = None
        if results.num_terminated:
            best = results.get_best_result(metric="val_acc", mode="max", scope="all")
        return SweepOutcome(
            name=self.config.name,
            experiment_path=self.store.experiment_path,
            tracking_uri=self.tracking_uri,
            experiment_id=tracking.experiment_id,
            parent_run_id=tracking.parent_run_id,
            ray=ray_description,
            num_trials=len(results),
            num_errors=results.num_errors,
            best_val_acc=None if best is None else best.metrics_dataframe["val_acc"].max(),
            best_params=None if best is None else best.config,
            seconds=time.perf_counter() - started,
            space_size=space.size(),
            unseeded_space_size=unseeded,
            baseline_val_acc=baseline_acc,
        )

    # ---- checks and connections ----------------------------------------------------------------

    def check_new_or_resumable(self, resume: bool) -> None:
        exists = self.store.exists() or tune.Tuner.can_restore(self.store.experiment_path)
        if resume and not exists:
            raise ConfigError(
                f"no sweep named {self.config.name!r} in {self.store.storage_path} to resume"
            )
        if not resume and exists:
            raise ConfigError(
                f"a sweep named {self.config.name!r} already exists in "
                f"{self.store.storage_path}: resume it with --resume {self.config.name} or "
                "choose another --name"
            )
        if resume:
            # Tune's restore unpickles the folder's files: whoever wrote them runs code here.
            check_restorable(self.store)

    def _inspect_inputs(self) -> _Inputs:
        inputs = inspect_inputs(self.config)
        if inputs.skipped:
            self.progress(f"left dense (grouped or depthwise convs): {', '.join(inputs.skipped)}")
        if inputs.skipped_images:
            self.progress(
                f"left out {len(inputs.skipped_images)} unreadable images (skip_bad_images; "
                f"listed in {SKIPPED_IMAGES_FILE} on the sweep's MLflow run)"
            )
        return inputs

    def _connect(self) -> str:
        """Ray, checked to have what a trial asks for; the data downloaded once on this node
        before trials start. Returns a description of the Ray it joined."""
        # A signal during Ray's start stops the sweep once Ray has started (connect_ray).
        description = connect_ray(
            self.config.cluster.address, verbose=self.verbose, stop_signals=self.stop_signals
        )
        self.progress(f"connected to {description}")
        check_cluster_resources(self.config)
        sweep_datamodule(self.config).prepare_data()
        return description

    def _open_tracking(self, client: MlflowClient, resume: bool) -> SweepTracking:
        """The sweep's parent run: found again on resume, else created with the config."""
        config = self.config
        experiment_id = experiment_id_for(client, config.tracking.experiment)
        parent_run_id = find_sweep_run(client, experiment_id, config.name) if resume else None
        if parent_run_id is None:
            parent_run_id = start_sweep_run(client, experiment_id, config.name, self._params())
            client.set_tag(parent_run_id, EXPERIMENT_PATH_TAG, self.store.experiment_path)
            stored = redact_values(config.model_dump(by_alias=True))  # no credentials in files
            self.store.write_text(CONFIG_ARTIFACT, yaml.safe_dump(stored))
            self._log_stored_file(client, parent_run_id, CONFIG_ARTIFACT)
        else:
            client.update_run(parent_run_id, status="RUNNING")
        client.set_tag(parent_run_id, DRIVER_TAG, driver_identity())
        self.progress(f"MLflow sweep run {parent_run_id} in {redact(self.tracking_uri)}")
        return SweepTracking(client, experiment_id, parent_run_id)

    def _params(self) -> dict[str, Any]:
        config = self.config
        return {
            "data": config.data.name,
            "model": config.model.spec,
            "mode": config.decomposition.mode,
            "seeded": config.decomposition.seed,
            "algorithm": config.search.algorithm,
            "num_samples": config.search.num_samples,
            "scheduler": config.scheduler.name,
            "max_t": config.max_t,
            "grace_period": config.scheduler.grace_period,
            "reduction_factor": config.scheduler.reduction_factor,
            "target_accuracy": config.stopping.target_accuracy,
            "resources/workers": config.resources.workers,
            "resources/cpu": config.resources.cpu,
            "resources/gpu": config.resources.gpu,
            **{
                key: value
                for key, value in deploy_params(config).items()
                if key != "deploy/device_name"
            },  # logged by the timing task, which knows it
            **(
                {
                    "budget_metric": config.decomposition.budget_metric,
                    "allocator": config.decomposition.allocator,
                }
                if config.decomposition.mode == "budget"
                else {}
            ),
        }

    def _log_stored_file(self, client: MlflowClient, run_id: str, filename: str) -> None:
        with tempfile.TemporaryDirectory(prefix="tucker-sweep-") as folder:
            client.log_artifact(run_id, str(self.store.copy_to(filename, Path(folder) / filename)))

    def _rank_space(self, inputs: _Inputs) -> tuple[RankSpace, int]:
        """The sweep's rank space (from the seed when there is one) and, for comparison, how
        many plans per_layer has without a seed."""
        seed = None
        if self.store.exists(SEED_FILE):
            with tempfile.TemporaryDirectory(prefix="tucker-sweep-") as folder:
                seed = read_seed(self.store.copy_to(SEED_FILE, Path(folder) / SEED_FILE))
        seed_data = seed.seed_data() if seed is not None else None
        latency = None
        if self.store.exists(LATENCY_FILE):
            latency = LatencyTable.from_json(json.loads(self.store.read_text(LATENCY_FILE)))
        space = build_rank_space(self.config, inputs.layers, seed_data, inputs.input_hw, latency)
        _, unseeded = per_layer_sizes(self.config, inputs.layers, seed_data)
        self.progress(f"rank space: {describe(space)}; per_layer unseeded: {unseeded:,} plans")
        return space, unseeded

    # ---- the trials ----------------------------------------------------------------------------

    def _fit(self, tracking: SweepTracking, setup: TrialSetup) -> tuple[tune.ResultGrid, int, int]:
        """Run the trials; end the parent run FINISHED, or KILLED (with the trial runs still
        open) when Ctrl-C stopped the sweep. Returns the results, how many trials ended and
        how many the sweep has."""
        params = param_space(self.config, setup.space)
        expected = trial_count(self.config, params)
        callback = TrialRunsCallback(
            tracking_uri=self.tracking_uri,
            experiment_id=tracking.experiment_id,
            parent_run_id=tracking.parent_run_id,
            max_epochs=self.config.max_t,
            target_accuracy=self.config.stopping.target_accuracy,
            describe_trial=TrialDescriber(setup.config, setup.space, setup.data_shape),
            sweep_name=self.config.name,
        )
        # Always among the callbacks (Tune keeps them for a resume); it shows nothing unless
        # this process set a display.
        callbacks: list[tune.Callback] = [callback, ProgressCallback(expected, self.config.max_t)]
        if tune.Tuner.can_restore(self.store.experiment_path):
            self.progress(f"resuming the Ray Tune experiment in {self.store.experiment_path}")
        tuner = make_tuner(self.config, self.store, setup, params, callbacks, self.verbose)
        status = "FAILED"
        set_display(self.show_progress)
        try:
            with self.stop_signals.tune_running():
                results = tuner.fit()
            finished = finished_trials(self.store.experiment_path)
            status = "KILLED" if finished < expected else "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if status != "FINISHED":
                end_unfinished_trial_runs(
                    tracking.client, tracking.experiment_id, tracking.parent_run_id, "KILLED"
                )
            tracking.client.set_terminated(tracking.parent_run_id, status=status)
            set_display(None)
        return results, finished, expected

    def _write_report(self, parent_run_id: str) -> None:
        """The best-rank report (partial after an interruption), as files and as artifacts of
        the sweep's parent run. A sweep whose trials all failed has none; it still ended."""
        try:
            report = write_sweep_report(
                self.tracking_uri, self.config.name, self.config.tracking.experiment
            )
        except TuckerSweepError as error:
            self.progress(f"no report: {error}")
            return
        self.progress(
            f"report: {report.files['html'].resolve().as_uri()} (also under report/ on MLflow "
            f"run {parent_run_id}; `tucker-sweep report {self.config.name}` prints it)"
        )


def launch_sweep(
    config: SweepConfig,
    resume: bool = False,
    progress: Progress | None = None,
    trial_callbacks: Sequence[TrialCallbackFactory] = (),
    show_progress: ShowProgress | None = None,
    verbose: bool = False,
) -> SweepOutcome:
    """Run (or resume) the sweep; `progress` receives one-line status messages,
    `show_progress` a SweepProgress whenever the trials move on (for a live view), and
    `verbose` lets Ray and Tune print their own logs and status tables.

    SIGINT and SIGTERM stop the sweep (stop_signals.py): SweepInterrupted then carries the
    `--resume` command and the exit status (130 or 143). No MLflow run is left RUNNING.

    `trial_callbacks`: callables, each called once per attempt of every trial (on the worker
    that runs it) to make a Lightning callback for that attempt's Trainer, e.g. to log more or
    to inject a fault in a test; with resources.workers > 1, once per rank, on each Ray Train
    worker (without Ray Tune's session API). They travel to the workers through Ray's object
    store, so their module must be importable there (on a cluster: Ray's runtime_env
    `py_modules`).
    """
    launcher = SweepLauncher(
        config, progress or (lambda _message: None), trial_callbacks, show_progress, verbose
    )
    # Taken before MLflow hears of the sweep, held until the driver ends: a second driver of
    # this name is refused in one line instead of logging into the same runs.
    with sweep_lock(launcher.store.storage_path, config.name):
        return launcher.run(resume)
