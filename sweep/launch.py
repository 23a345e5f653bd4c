"""Launch or resume a sweep: Ray (local on loopback, or a cluster), the dense baseline and the
seed, then a Tuner with ASHA over the rank space, every trial recorded in MLflow."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
import yaml
from ray import tune
from ray.tune import ExperimentAnalysis
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator

from lightning_modules.models import build_model, conv_layers, decompose, model_cost
from sweep.baseline import BaselineResult, baseline_epochs, train_baseline
from sweep.config import SweepConfig
from sweep.errors import ConfigError, SweepInterrupted, TuckerSweepError
from sweep.ray_cluster import check_cluster_resources, connect_ray
from sweep.report import write_sweep_report
from sweep.run_tags import EXPERIMENT_PATH_TAG
from sweep.seed_file import SeedFile, read_seed
from sweep.seeding import SEED_FILE, seed_from_baseline
from sweep.space import (
    RATIO_KEYS,
    build_rank_space,
    decode_trial,
    param_space,
    select_layers,
    trial_count,
)
from sweep.storage import SweepStore
from sweep.tracking import (
    TrialRunsCallback,
    end_unfinished_trial_runs,
    experiment_id_for,
    find_sweep_run,
    finish_run,
    log_baseline_run,
    start_sweep_run,
    tracking_client,
)
from sweep.trainable import DataShape, TrialSetup, datamodule_for, run_trial

MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
CONFIG_FILE = "config.yaml"
BASELINE_WEIGHTS = "baseline.pt"
BASELINE_HISTORY = "baseline_history.yaml"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrialDescriber:
    """Trial config -> (MLflow params, static cost metrics). Picklable: Tune stores it with
    the callback in its experiment state."""

    config: SweepConfig
    layers: tuple
    data_shape: DataShape

    def __call__(self, trial_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
        plan = decode_trial(trial_config, self.config, self.layers)
        params: dict[str, Any] = {f"ranks/{name}": "x".join(map(str, ranks))
                                  for name, ranks in plan.rank_plan.items()}  # fmt: skip
        params.update(lr=plan.lr, init=plan.init)
        for key in RATIO_KEYS:
            if key in trial_config:
                params[key] = trial_config[key]
        shape = self.data_shape
        model = build_model(
            self.config.model.name,
            shape.in_channels,
            shape.num_classes,
            **self.config.model.options,
        )
        decompose(model, plan.rank_plan, init="random")
        cost = model_cost(model, (shape.in_channels, *shape.input_size))
        metrics = {"params": cost.params, "flops": cost.flops, "compression": cost.compression}
        return params, metrics


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
    space_size: int
    unseeded_space_size: int
    baseline_val_acc: float | None


def _searcher(config: SweepConfig) -> Any:
    if config.search.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric="val_acc", mode="max", seed=config.search.seed)
    return BasicVariantGenerator(random_state=config.search.seed)


def _scheduler(config: SweepConfig) -> Any:
    if config.scheduler.name == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        metric=config.scheduler.metric,
        mode="min" if config.scheduler.metric == "val_loss" else "max",
        time_attr="training_iteration",
        max_t=config.max_t,
        grace_period=config.scheduler.grace_period,
        reduction_factor=config.scheduler.reduction_factor,
        brackets=config.scheduler.brackets,
    )


def _resources(config: SweepConfig) -> dict[str, float]:
    resources = {"cpu": config.resources.cpu}
    if config.resources.gpu:
        resources["gpu"] = config.resources.gpu
    return resources


def _train_baseline_on_ray(config: SweepConfig, shape: DataShape) -> BaselineResult:
    """The baseline as a Ray task with a trial's resources: on a cluster it runs on a worker
    (with its GPU), not on the driver."""
    remote = ray.remote(num_cpus=config.resources.cpu, num_gpus=config.resources.gpu)(
        train_baseline
    )
    return ray.get(remote.remote(config, shape, baseline_epochs(config)))


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


def finished_trials(experiment_path: str) -> int:
    """Trials that ended (completed, stopped early or failed) in the experiment state Tune
    saved last. Read back from storage because, after Ctrl-C, Tune's in-memory trials are all
    marked TERMINATED by its cleanup while the saved state keeps them pending."""
    # Trials that never reported have no result files, which ExperimentAnalysis warns about.
    analysis_logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_logger.level
    analysis_logger.setLevel(logging.ERROR)
    try:
        trials = ExperimentAnalysis(experiment_path).trials
    finally:
        analysis_logger.setLevel(level)
    return sum(trial.status in ("TERMINATED", "ERROR") for trial in trials)


class SweepLauncher:
    """The steps of a sweep, in order; `run` wires them."""

    def __init__(self, config: SweepConfig, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self.store = SweepStore(config.cluster.storage_path, config.name)
        self.tracking_uri = config.tracking.resolved_uri()

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

    def run(self, resume: bool) -> SweepOutcome:
        started = time.perf_counter()
        config = self.config
        configure_driver()
        # Everything that can be wrong with the input is checked before anything is recorded.
        self.check_new_or_resumable(resume)
        datamodule = datamodule_for(config)
        shape = DataShape.of(datamodule)
        dense = build_model(
            config.model.name, shape.in_channels, shape.num_classes, **config.model.options
        )
        layers = tuple(conv_layers(dense))
        select_layers(config, layers)
        client = tracking_client(self.tracking_uri)
        ray_description = connect_ray(config.cluster.address)
        self.progress(f"connected to {ray_description}")
        check_cluster_resources(config)
        datamodule.prepare_data()  # download once, before trials start on this node

        experiment_id = experiment_id_for(client, config.tracking.experiment)
        parent_run_id = self._open_sweep_run(client, experiment_id, resume)
        baseline_state, baseline_acc = self._baseline_and_seed(
            client, experiment_id, parent_run_id, shape
        )
        space = build_rank_space(config, layers, self._stored_seed())
        unseeded = build_rank_space(config, layers, None)
        self.progress(
            f"rank space: {space.size():,} plans"
            + (f" (seeded; {unseeded.size():,} unseeded)" if space.seeded else "")
        )
        callback = TrialRunsCallback(
            tracking_uri=self.tracking_uri,
            experiment_name=config.tracking.experiment,
            parent_run_id=parent_run_id,
            max_epochs=config.max_t,
            target_accuracy=config.stopping.target_accuracy,
            trial_params=TrialDescriber(config, layers, shape),
        )
        params = param_space(config, space)
        expected = trial_count(config, params)
        tuner = self._tuner(TrialSetup(config, layers, shape, baseline_state), params, callback)
        results, finished = self._fit(tuner, client, experiment_id, parent_run_id, expected)
        self._write_report(parent_run_id)
        if finished < expected:
            raise SweepInterrupted(
                f"sweep {config.name!r} interrupted after {finished} of "
                f"{expected} trials; continue it with: tucker-sweep launch "
                f"--resume {config.name} --storage-path {self.store.storage_path}"
            )
        best = None
        if results.num_terminated:
            best = results.get_best_result(metric="val_acc", mode="max", scope="all")
        return SweepOutcome(
            name=config.name,
            experiment_path=self.store.experiment_path,
            tracking_uri=self.tracking_uri,
            experiment_id=experiment_id,
            parent_run_id=parent_run_id,
            ray=ray_description,
            num_trials=len(results),
            num_errors=results.num_errors,
            best_val_acc=None if best is None else best.metrics_dataframe["val_acc"].max(),
            best_params=None if best is None else best.config,
            seconds=time.perf_counter() - started,
            space_size=space.size(),
            unseeded_space_size=unseeded.size(),
            baseline_val_acc=baseline_acc,
        )

    def _open_sweep_run(self, client: Any, experiment_id: str, resume: bool) -> str:
        """The sweep's parent run: found again on resume, else created with the config."""
        config = self.config
        parent_run_id = find_sweep_run(client, experiment_id, config.name) if resume else None
        if parent_run_id is None:
            parent_run_id = start_sweep_run(client, experiment_id, config.name, self._params())
            client.set_tag(parent_run_id, EXPERIMENT_PATH_TAG, self.store.experiment_path)
            self.store.write_text(CONFIG_FILE, yaml.safe_dump(config.model_dump(by_alias=True)))
            self._log_text_artifact(client, parent_run_id, CONFIG_FILE)
        else:
            client.update_run(parent_run_id, status="RUNNING")
        self.progress(f"MLflow sweep run {parent_run_id} in {self.tracking_uri}")
        return parent_run_id

    def _fit(
        self, tuner: tune.Tuner, client: Any, experiment_id: str, parent_run_id: str,
        expected: int,
    ) -> tuple[Any, int]:  # fmt: skip
        """Run the trials; end the parent run FINISHED, or KILLED (with the trial runs still
        open) when Ctrl-C stopped the sweep. Returns the results and how many trials ended."""
        status = "FAILED"
        try:
            results = tuner.fit()
            finished = finished_trials(self.store.experiment_path)
            status = "KILLED" if finished < expected else "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if status != "FINISHED":
                end_unfinished_trial_runs(client, experiment_id, parent_run_id, "KILLED")
            client.set_terminated(parent_run_id, status=status)
        return results, finished

    def _write_report(self, parent_run_id: str) -> None:
        """The best-rank report (partial after an interruption), as files and as artifacts of
        the sweep's parent run. A sweep whose trials all failed has none; it still ended."""
        try:
            report = write_sweep_report(
                self.tracking_uri,
                sweep=self.config.name,
                experiment=self.config.tracking.experiment,
            )
        except TuckerSweepError as error:
            self.progress(f"no report: {error}")
            return
        self.progress(
            f"report: {report.files['html'].resolve().as_uri()} (also under report/ on MLflow "
            f"run {parent_run_id}; `tucker-sweep report {self.config.name}` prints it)"
        )

    def _params(self) -> dict[str, Any]:
        config = self.config
        return {
            "data": config.data.name,
            "model": config.model.name,
            "mode": config.decomposition.mode,
            "seeded": config.decomposition.seed,
            "algorithm": config.search.algorithm,
            "num_samples": config.search.num_samples,
            "scheduler": config.scheduler.name,
            "max_t": config.max_t,
            "grace_period": config.scheduler.grace_period,
            "reduction_factor": config.scheduler.reduction_factor,
            "target_accuracy": config.stopping.target_accuracy,
            "resources/cpu": config.resources.cpu,
            "resources/gpu": config.resources.gpu,
        }

    def _stored_seed(self) -> SeedFile | None:
        if not self.store.exists(SEED_FILE):
            return None
        with tempfile.TemporaryDirectory(prefix="tucker-sweep-") as folder:
            return read_seed(self.store.copy_to(SEED_FILE, Path(folder) / SEED_FILE))

    def _log_text_artifact(self, client: Any, run_id: str, filename: str) -> None:
        with tempfile.TemporaryDirectory(prefix="tucker-sweep-") as folder:
            client.log_artifact(run_id, str(self.store.copy_to(filename, Path(folder) / filename)))

    def _baseline_and_seed(
        self, client: Any, experiment_id: str, parent_run_id: str, shape: DataShape
    ) -> tuple[dict | None, float | None]:
        """Train (or, on resume, reload) the dense baseline and write the seed."""
        config = self.config
        needs_baseline = config.decomposition.seed or "hooi" in config.decomposition.init
        if not needs_baseline:
            return None, None
        if self.store.exists(BASELINE_WEIGHTS):
            history = yaml.safe_load(self.store.read_text(BASELINE_HISTORY)) or []
            self.progress("dense baseline: reusing the one trained before the interruption")
            acc = max((row.get("val_acc", 0.0) for row in history), default=None)
            return self.store.load_tensors(BASELINE_WEIGHTS), acc
        self.progress(f"dense baseline: training {baseline_epochs(config)} epochs")
        baseline = _train_baseline_on_ray(config, shape)
        cost = baseline.cost
        run_id = log_baseline_run(
            client,
            experiment_id,
            baseline.history,
            {"params": cost.params, "flops": cost.flops, "compression": 1.0},
            config.stopping.target_accuracy,
            parent_run_id=parent_run_id,
        )
        self.progress(f"dense baseline: val_acc {baseline.val_acc:.4f}")
        if config.decomposition.seed:
            with tempfile.TemporaryDirectory() as folder:
                artifacts = seed_from_baseline(
                    config, shape, baseline, Path(folder), checkpoint=BASELINE_WEIGHTS,
                    run_id=run_id,
                )  # fmt: skip
                for path in (artifacts.seed_path, artifacts.plot_path):
                    self.store.write_bytes(path.name, path.read_bytes())
                    client.log_artifact(run_id, str(path))
                    client.log_artifact(parent_run_id, str(path))
        # Saved last: its presence means the baseline step is complete (see resume above).
        self.store.write_text(BASELINE_HISTORY, yaml.safe_dump(baseline.history))
        self.store.save_tensors(BASELINE_WEIGHTS, baseline.state_dict)
        finish_run(client, run_id)
        return baseline.state_dict, baseline.val_acc

    def _tuner(
        self, setup: TrialSetup, params: dict[str, Any], callback: TrialRunsCallback
    ) -> tune.Tuner:
        config = self.config
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, setup=setup), _resources(config)
        )
        path = self.store.experiment_path
        if tune.Tuner.can_restore(path):
            self.progress(f"resuming the Ray Tune experiment in {path}")
            return tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        return tune.Tuner(
            trainable,
            param_space=params,
            # No metric here: the searcher optimises val_acc, ASHA watches scheduler.metric.
            tune_config=tune.TuneConfig(
                num_samples=config.search.num_samples,
                search_alg=_searcher(config),
                scheduler=_scheduler(config),
                max_concurrent_trials=config.search.max_concurrent_trials,
                # A new worker process per trial costs seconds of imports (torch, Lightning);
                # reused, it also keeps the layers' autotuned path choices. Every trial builds
                # its data, model and Trainer afresh, so nothing leaks between trials.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=config.name,
                storage_path=self.store.storage_path,
                callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=config.training.max_failures),
                # Per trial, the checkpoint with the best val_acc (what export takes) and the
                # latest one (Tune never deletes it; a retried or resumed trial starts there).
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1,
                    checkpoint_score_attribute="val_acc",
                    checkpoint_score_order="max",
                ),
                verbose=1,
            ),
        )


def launch_sweep(
    config: SweepConfig, resume: bool = False, progress: Progress | None = None
) -> SweepOutcome:
    """Run (or resume) the sweep; `progress` receives one-line status messages."""
    return SweepLauncher(config, progress or (lambda _message: None)).run(resume)
