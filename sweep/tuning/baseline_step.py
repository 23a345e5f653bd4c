"""The dense baseline of a sweep: trained once as a Ray task (with resources.workers > 1, as a
DDP run on that many Ray Train workers, like the trials), recorded as the sweep's `baseline`
run (the dense reference, trained for max_t epochs), its briefly trained kernels seeding the
rank space and initialising the trials; on resume, reloaded from the sweep's storage instead
of trained again."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
import yaml

from lightning_modules.data import DataShape
from lightning_modules.nets import ConvLayer
from sweep.config import SweepConfig
from sweep.seeding.baseline import (
    BaselineResult,
    baseline_epochs,
    baseline_lr,
    pretrained_references,
    train_baseline,
)
from sweep.seeding.deployment import LATENCY_FILE, DeploymentTiming, measure_deployment
from sweep.seeding.seed import seed_from_baseline
from sweep.tracking.layout import SweepTracking, finish_run, log_baseline_run
from sweep.tracking.names import FINETUNED_BASELINE_KIND
from sweep.tuning.storage import SweepStore
from sweep.tuning.train_run import train_runs_path
from sweep.tuning.train_workers import is_multi_worker
from sweep.tuning.worker_call import call_on_workers

BASELINE_WEIGHTS = "baseline.pt"
BASELINE_HISTORY = "baseline_history.yaml"


def _on_ray(config: SweepConfig, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` as a Ray task with a trial's resources: on a cluster it runs on a
    worker (with its GPU), not on the driver."""
    resources = {"num_cpus": config.resources.cpu, "num_gpus": config.resources.gpu}
    return ray.get(ray.remote(**resources)(function).remote(*args))


def _fit_on_ray(
    config: SweepConfig, train_runs: str, function: Callable[..., Any], *args: Any
) -> Any:
    """`function(config, *args)`, a fit of the dense model, where trials fit: a Ray task with a
    trial's resources, or the ranks of a DDP run on resources.workers Ray Train workers."""
    if is_multi_worker(config):
        return call_on_workers(config, train_runs, function, *args)
    return _on_ray(config, function, config, *args)


def train_baseline_on_ray(
    config: SweepConfig,
    shape: DataShape,
    train_runs: str,
    pretrained: dict[str, torch.Tensor] | None = None,
) -> tuple[BaselineResult, BaselineResult | None]:
    """The baseline, trained as trials are (see _fit_on_ray; `train_runs`: where Ray Train
    runs keep their files meanwhile). With `pretrained` weights (model.checkpoint, read by the
    driver): the given model evaluated as it is, and the given model fine-tuned with a trial's
    budget (the second dense row); otherwise the trained baseline and None."""
    if pretrained is not None:
        return _fit_on_ray(config, train_runs, pretrained_references, shape, pretrained)
    trained = _fit_on_ray(
        config, train_runs, train_baseline, shape, baseline_epochs(config), config.max_t
    )
    return trained, None


def time_deployment_on_ray(
    config: SweepConfig,
    shape: DataShape,
    layers: Sequence[ConvLayer],
    input_hw: Mapping[str, tuple[int, int]],
) -> DeploymentTiming:
    """The dense model's latency (and a latency budget's table) as a Ray task with a trial's
    resources: timed where trials run, which has the deployment device when it is their GPU."""
    return _on_ray(config, measure_deployment, config, shape, list(layers), dict(input_hw))


class BaselineStep:
    """Train (or, on resume, reload) the dense baseline and write the seed."""

    def __init__(self, config: SweepConfig, store: SweepStore, progress: Callable[[str], None]):
        self.config = config
        self.store = store
        self.progress = progress

    def run(
        self,
        tracking: SweepTracking,
        shape: DataShape,
        pretrained: dict[str, torch.Tensor] | None = None,
        timed_layers: Sequence[ConvLayer] = (),
        input_hw: Mapping[str, tuple[int, int]] | None = None,
    ) -> tuple[dict[str, torch.Tensor] | None, float | None]:
        """The baseline's weights after its first phase (for HOOI initialisation) and the
        reference's best validation accuracy. With `pretrained` weights (model.checkpoint)
        the baseline is that model, evaluated, not trained. The dense model is also timed on
        the deployment device (and `timed_layers` for a latency budget's table)."""
        config = self.config
        if self.store.exists(BASELINE_WEIGHTS):
            self.progress("dense baseline: reusing the one trained before the interruption")
            return self._stored()
        if pretrained is not None:
            self.progress(
                f"dense reference: the given weights ({config.model.checkpoint}), evaluated "
                f"as they are, and fine-tuned {config.max_t} epochs at lr "
                f"{baseline_lr(config):.3g} as a trial is; nothing trains from scratch"
            )
        else:
            self.progress(
                f"dense baseline: training {baseline_epochs(config)} epochs for the seed, "
                f"{max(config.max_t, baseline_epochs(config))} in all for the reference"
            )
        baseline, finetuned = train_baseline_on_ray(
            config, shape, train_runs_path(self.store.experiment_path), pretrained
        )
        timing = self._time_deployment(tracking, shape, timed_layers, input_hw or {})
        run_id = self._log(tracking, baseline, "baseline", timing.dense_metrics)
        self.progress(
            f"dense baseline: val_acc {baseline.val_acc:.4f}, test_acc {baseline.test_acc:.4f}"
        )
        if finetuned is not None:
            finetuned_id = self._log(tracking, finetuned, FINETUNED_BASELINE_KIND,
                                     timing.dense_metrics)  # fmt: skip
            finish_run(tracking.client, finetuned_id)
            self.progress(
                f"dense baseline fine-tuned: val_acc {finetuned.val_acc:.4f}, test_acc "
                f"{finetuned.test_acc:.4f}"
            )
        if config.decomposition.seed:
            self._write_seed(tracking, run_id, shape, baseline)
        if timing.table is not None:
            self._write_table(tracking, run_id, timing.table)
        # Saved last: its presence means the baseline step is complete (see above).
        self.store.write_text(BASELINE_HISTORY, yaml.safe_dump(baseline.history))
        self.store.save_tensors(BASELINE_WEIGHTS, baseline.state_dict)
        finish_run(tracking.client, run_id)
        return baseline.state_dict, baseline.val_acc

    def _time_deployment(
        self,
        tracking: SweepTracking,
        shape: DataShape,
        layers: Sequence[ConvLayer],
        input_hw: Mapping[str, tuple[int, int]],
    ) -> DeploymentTiming:
        config = self.config
        timed = layers if config.decomposition.budget_metric == "latency" else ()
        self.progress(
            f"deployment: timing the dense model on {config.deploy_device}"
            + (f" and {len(timed)} layers for the latency table" if timed else "")
        )
        timing = time_deployment_on_ray(config, shape, timed, input_hw)
        tracking.client.log_param(tracking.parent_run_id, "deploy/device_name", timing.device_name)
        return timing

    def _write_table(self, tracking: SweepTracking, run_id: str, table: dict) -> None:
        """latency.json beside seed.json (a resume reads it from there), and as an artifact
        of the baseline run."""
        text = json.dumps(table, indent=1)
        self.store.write_text(LATENCY_FILE, text)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / LATENCY_FILE
            path.write_text(text)
            tracking.client.log_artifact(run_id, str(path))

    def _log(
        self,
        tracking: SweepTracking,
        baseline: BaselineResult,
        kind: str,
        speed_metrics: Mapping[str, float],
    ) -> str:
        return log_baseline_run(
            tracking.client,
            tracking.experiment_id,
            baseline.history,
            {**baseline.static_metrics(), **speed_metrics},
            self.config.stopping.target_accuracy,
            parent_run_id=tracking.parent_run_id,
            sweep_name=self.config.name,
            kind=kind,
        )

    def _stored(self) -> tuple[dict[str, torch.Tensor], float | None]:
        history = yaml.safe_load(self.store.read_text(BASELINE_HISTORY)) or []
        accuracy = max((row.get("val_acc", 0.0) for row in history), default=None)
        return self.store.load_tensors(BASELINE_WEIGHTS), accuracy

    def _write_seed(
        self,
        tracking: SweepTracking,
        baseline_run_id: str,
        shape: DataShape,
        baseline: BaselineResult,
    ) -> None:
        """seed.json and spectra.png: beside the sweep's Tune results, and as artifacts of the
        baseline run and the sweep's parent run."""
        with tempfile.TemporaryDirectory() as folder:
            artifacts = seed_from_baseline(
                self.config, shape, baseline, Path(folder), checkpoint=BASELINE_WEIGHTS,
                run_id=baseline_run_id,
            )  # fmt: skip
            for path in (artifacts.seed_path, artifacts.plot_path):
                self.store.write_bytes(path.name, path.read_bytes())
                tracking.client.log_artifact(baseline_run_id, str(path))
                tracking.client.log_artifact(tracking.parent_run_id, str(path))
