"""The best-rank report as data: pydantic models whose JSON Schema is the report's contract.

`report.json` carries `schema_version`; `sweep/report/schema.json` is `report_json_schema()`
written out (a test keeps the two identical; scripts/write-report-schema.py rewrites it). A
change that breaks readers of the JSON bumps SCHEMA_VERSION. Missing values (a target never
reached, a trial still running) are null, never NaN, which JSON does not have.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 4  # 3: dense rows (role; the fine-tuned given model); 4: measured speed
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = f"https://github.com/tucker-sweep/tucker-sweep/report-schema/v{SCHEMA_VERSION}.json"

TrialStatus = Literal["completed", "stopped_early", "failed", "running", "interrupted"]
SweepState = Literal["finished", "running", "interrupted", "failed"]


class _Model(BaseModel):
    # Serialization defaults required: every key is always present in report.json.
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


class TrialEntry(_Model):
    """One trial: its ranks, its cost, how well and how fast it learned, how it ended."""

    run_id: str = Field(description="MLflow run id of the trial's child run")
    trial_id: str | None = Field(description="Ray Tune trial id")
    trial_name: str
    status: TrialStatus = Field(
        description="completed (ran to max_t), stopped_early (by ASHA), failed, or running / "
        "interrupted in a sweep that has not finished"
    )
    ranks: dict[str, tuple[int, int, int]] = Field(description="layer -> (N', C', D')")
    lr: float | None
    init: str | None = Field(description="hooi (from the dense baseline) or random")
    ratios: dict[str, float] | None = Field(description="rank ratios per mode (ratio mode)")
    params: int | None
    flops: int | None = Field(description="multiply-adds per image")
    compression: float | None = Field(description="dense parameters / parameters")
    flops_reduction: float | None = Field(description="baseline FLOPs / FLOPs")
    best_val_acc: float | None = Field(description="selects: the best validation accuracy")
    test_acc: float | None = Field(
        description="judges: test accuracy of the best validation epoch, measured once for a "
        "trial that ran to max_t or is on a Pareto front (null otherwise); never used to select"
    )
    epochs_to_target: int | None = Field(description="first epoch at the target accuracy")
    seconds_to_target: float | None
    epochs_run: int | None
    wall_seconds: float | None
    target_compression: float | None = Field(description="the sampled target (budget mode)")
    estimated_error: float | None = Field(
        description="the allocator's largest estimated relative Tucker error (budget mode)"
    )
    on_pareto_params: bool = Field(description="on the accuracy/parameters Pareto front")
    on_pareto_flops: bool = Field(description="on the accuracy/FLOPs Pareto front")
    latency_ms: dict[str, float] | None = Field(
        description="deployment batch size -> median latency in ms of the trial's model in its "
        "inference form, measured on the deployment device (null: not measured)"
    )
    speedup: dict[str, float] | None = Field(
        description="deployment batch size -> measured speed-up: the latency of the dense "
        "model timed beside it in the same process over the trial's own (null: not measured)"
    )
    on_pareto_speedup: bool = Field(
        description="on the front of val acc against measured speed-up at the first deployment "
        "batch size"
    )

    def speedup_at(self, batch: int | None) -> float | None:
        """The measured speed-up at `batch` (None: not measured)."""
        if batch is None or self.speedup is None:
            return None
        return self.speedup.get(str(batch))


DenseRole = Literal["trained", "given", "finetuned"]
DENSE_LABELS: dict[str, str] = {  # each role's name in the report
    "trained": "dense baseline",
    "given": "given model",
    "finetuned": "given model fine-tuned",
}


class BaselineEntry(_Model):
    """A dense row: trained as long as a trial (`trained`); with model.checkpoint, the given
    model as it is (`given`) and fine-tuned with a trial's budget (`finetuned`)."""

    run_id: str
    role: DenseRole = Field(
        description="trained (as long as a trial), given (model.checkpoint as it is) or "
        "finetuned (model.checkpoint fine-tuned with a trial's epochs and lr, same data)"
    )
    params: int | None
    flops: int | None
    best_val_acc: float | None
    test_acc: float | None = Field(description="test accuracy of its best validation epoch")
    epochs_to_target: int | None
    seconds_to_target: float | None
    epochs_run: int | None
    wall_seconds: float | None
    latency_ms: dict[str, float] | None = Field(
        description="deployment batch size -> the dense model's median latency in ms, "
        "measured on the deployment device (null: not measured)"
    )


class DeployInfo(_Model):
    """The device a sweep measured speed on (config `deploy`; the parent run's params)."""

    device: str = Field(description="cpu or cuda")
    device_name: str | None = Field(description="the CPU's or the GPU's model")
    threads: int | None = Field(description="the CPU threads the timings used")
    batch_sizes: list[int] = Field(description="the batch sizes timed; the first one ranks")
    dtype: str | None

    @property
    def first_batch(self) -> int | None:
        """The batch size that speed is ranked and headlined at."""
        return self.batch_sizes[0] if self.batch_sizes else None


class Criteria(_Model):
    max_params: int | None = Field(description="parameter budget (None: no budget)")
    min_compression: float
    max_drop: float = Field(description="points of val acc a plan may lose against dense")
    minimise: Literal["params", "flops", "latency"] = Field(
        description="what the plan has least of: params, FLOPs, or latency (the highest "
        "measured speed-up at the first deployment batch size)"
    )


class Recommendation(_Model):
    """The plan with the fewest parameters (or FLOPs, or the highest measured speed-up) among
    the finished trials that meet the criteria and whose val acc is within max_drop points of
    the dense reference's (ties: the higher val acc). Without a dense reference: the best val
    acc that meets the criteria."""

    criteria: Criteria
    trial: TrialEntry | None
    eligible_trials: int = Field(description="finished trials that meet the budget criteria")
    within_tolerance: int | None = Field(description="... and are within max_drop of dense")
    accuracy_delta: float | None = Field(description="trial's best val acc - the reference's")
    test_accuracy_delta: float | None = Field(description="trial's test acc - the reference's")
    closest: TrialEntry | None = Field(
        description="when no trial is within tolerance: the one with the best val acc"
    )
    note: str


class Convergence(_Model):
    """Epochs and seconds to the target accuracy, Tucker trials against the dense baseline."""

    target_accuracy: float | None
    baseline_epochs_to_target: int | None
    baseline_seconds_to_target: float | None
    trials_considered: int = Field(description="finished trials (completed or stopped early)")
    trials_reached: int
    median_epochs_to_target: float | None = Field(description="over the trials that reached it")
    median_seconds_to_target: float | None
    trials_faster: int = Field(description="reached the target in fewer epochs than the baseline")
    trials_same: int
    trials_slower: int = Field(description="reached the target in more epochs than the baseline")
    trials_not_reached: int = Field(description="never reached it (ASHA may have stopped them)")
    best_trial_epochs_to_target: int | None
    verdict: Literal["faster", "slower", "same", "undetermined"] = Field(
        description="median epochs to target of the Tucker trials vs the baseline's"
    )
    summary: str


class AshaSaving(_Model):
    """Trial-epochs run, against every trial running to max_t."""

    scheduler: str | None
    max_t: int | None
    trials: int
    trial_epochs_run: int
    trial_epochs_full: int | None
    saving_factor: float | None = Field(description="trial_epochs_full / trial_epochs_run")
    fraction_saved: float | None


class Curve(_Model):
    """Validation accuracy per epoch of one run (the baseline or a top trial)."""

    run_id: str
    label: str
    epochs: list[int]
    val_acc: list[float]


class SweepInfo(_Model):
    name: str
    run_id: str = Field(description="MLflow run id of the sweep's parent run")
    experiment: str
    experiment_id: str
    tracking_uri: str
    mlflow_status: str
    state: SweepState
    partial: bool = Field(description="the sweep has not finished: figures may change")
    data: str | None
    model: str | None
    target_accuracy: float | None
    max_t: int | None
    num_samples: int | None
    layers: list[str] = Field(description="decomposed layers, in model order")
    params: dict[str, str] = Field(description="the parent run's params")
    started_ms: int | None
    ended_ms: int | None


class Report(_Model):
    """A sweep's best-rank report."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_serialization_defaults_required=True,
        json_schema_extra={"$id": SCHEMA_ID, "$schema": JSON_SCHEMA_DIALECT},
    )

    schema_version: Literal[4] = SCHEMA_VERSION
    generated_at: str = Field(description="ISO 8601, UTC")
    sweep: SweepInfo
    baseline: BaselineEntry | None = Field(
        description="the dense reference every comparison and the recommendation's tolerance "
        "use: the dense row with the best val acc"
    )
    dense: list[BaselineEntry] = Field(
        description="every dense row: the trained baseline, or the given and the fine-tuned "
        "given model (model.checkpoint)"
    )
    trials: list[TrialEntry] = Field(description="every trial, best accuracy first")
    counts: dict[str, int] = Field(description="trials per status")
    best: TrialEntry | None = Field(description="highest best_val_acc (ties: fewer params)")
    recommended: Recommendation
    pareto_params: list[str] = Field(description="run ids on the accuracy/params front")
    pareto_flops: list[str] = Field(description="run ids on the accuracy/FLOPs front")
    pareto_speedup: list[str] = Field(
        description="run ids on the front of val acc against measured speed-up at the first "
        "deployment batch size, fastest first (empty: speed not measured)"
    )
    deploy: DeployInfo | None = Field(
        description="the device speed was measured on (null: the sweep measured no speed)"
    )
    headline: str | None = Field(
        description="the recommended plan in one line: its parameter and FLOP reductions "
        "(counts), and its measured speed-up where one was measured, with the device"
    )
    convergence: Convergence
    asha: AshaSaving
    curves: list[Curve] = Field(description="val_acc per epoch: the baseline and the top trials")
    plots: dict[str, str] = Field(description="plot name -> PNG file beside the report")

    @property
    def speed_batch(self) -> int | None:
        """The deployment batch size that speed is ranked and headlined at: the first."""
        return self.deploy.first_batch if self.deploy else None

    @property
    def measured_speed(self) -> bool:
        """Whether any trial has a measured speed-up at that batch size."""
        return any(entry.speedup_at(self.speed_batch) is not None for entry in self.trials)


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of report.json (draft 2020-12)."""
    return Report.model_json_schema(mode="serialization")
