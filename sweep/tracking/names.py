"""Names of the MLflow layout of a sweep (see sweep/tracking/__init__.py): tags, metrics and
artifact paths, each defined here once."""

# ---- tags ----------------------------------------------------------------------------------------
KIND_TAG = "tucker_sweep.kind"  # sweep | baseline | trial (train-dense | train-tucker: `train`)
# With model.checkpoint a sweep has two dense runs: `baseline` (the given model as it is) and
# `baseline_finetuned` (the given model fine-tuned with a trial's budget).
FINETUNED_BASELINE_KIND = "baseline_finetuned"
SWEEP_TAG = "tucker_sweep.sweep"  # the sweep's name, on its parent run
EXPERIMENT_PATH_TAG = "tucker_sweep.experiment_path"  # Ray Tune's results, on the parent run
TRIAL_ID_TAG = "tucker_sweep.trial_id"  # Tune's trial id, on a trial's run
TRIAL_NAME_TAG = "trial_name"  # Tune's trial name (run_trial_<experiment>_<index>)
STOP_REASON_TAG = "tucker_sweep.stop_reason"  # completed | stopped_early | failed
NODES_TAG = "tucker_sweep.nodes"  # comma-separated IPs of the Ray nodes that ran a trial
STOP_REASONS = ("completed", "stopped_early", "failed")

# ---- metrics -------------------------------------------------------------------------------------
# Per epoch, step = epoch (1-based); the trials report them to Tune under the same names.
VAL_ACC = "val_acc"  # what selects: a trial has reported once it has this metric
EPOCH_METRICS = (VAL_ACC, "val_loss", "train_loss", "train_acc")
# Trial seconds at each epoch (Tune's time_total_s), kept so that seconds_to_target can be
# recomputed after a resume.
SECONDS_METRIC = "trial_seconds"
# Static figures of a plan, logged once.
COST_METRICS = ("params", "flops", "compression")
# Accuracy on the test split of the best validation epoch, measured once, never used to select.
TEST_ACC_METRIC = "test_acc"
# Budget mode: the allocator's estimate of the plan's largest relative Tucker error.
ESTIMATED_ERROR_METRIC = "estimated_error"
# Measured speed on the deployment device (config `deploy`), one metric per batch size B:
# a trial's run holds its inference form's median latency, the dense reference's timed beside
# it in the same process, and their ratio (the speed-up); the baseline run holds the dense
# model's latency. `latency_ms` (at the first batch size) is what a searcher minimises.
LATENCY_METRIC = "latency_ms"
LATENCY_PREFIX = "latency_ms_b"
DENSE_LATENCY_PREFIX = "dense_latency_ms_b"
SPEEDUP_PREFIX = "speedup_b"
# The deployment device of a sweep, as params of its parent run.
DEPLOY_PARAMS = (
    "deploy/device",
    "deploy/device_name",
    "deploy/threads",
    "deploy/batch_sizes",
    "deploy/dtype",
)


def latency_metric(batch: int) -> str:
    return f"{LATENCY_PREFIX}{batch}"


def dense_latency_metric(batch: int) -> str:
    return f"{DENSE_LATENCY_PREFIX}{batch}"


def speedup_metric(batch: int) -> str:
    return f"{SPEEDUP_PREFIX}{batch}"


def is_speed_metric(key: str) -> bool:
    """Whether a trial's result key is one of the measured-speed figures above."""
    return key == LATENCY_METRIC or key.startswith(
        (LATENCY_PREFIX, DENSE_LATENCY_PREFIX, SPEEDUP_PREFIX)
    )


# Logged when a run ends (see layout.final_metrics).
FINAL_METRICS = (
    *COST_METRICS,
    "best_val_acc",
    "epochs_to_target",
    "seconds_to_target",
    "epochs_run",
    "stopped_early",
    "wall_seconds",
)

# ---- artifacts -----------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config.yaml"  # the sweep's config, on the parent run
REPORT_ARTIFACT_PATH = "report"  # folder of the report's files on the parent run
EXPORT_ARTIFACT_PATH = "export"  # folder of an exported model on the trial's run


def trial_index(trial_name: str) -> str:
    """'00004' for run_trial_65e79_00004: the index Tune gives a trial within its sweep."""
    return trial_name.rsplit("_", 1)[-1]
