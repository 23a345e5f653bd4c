"""Tags and metric names of the MLflow layout (see sweep/tracking.py), in one place."""

KIND_TAG = "tucker_sweep.kind"  # sweep | baseline | trial
SWEEP_TAG = "tucker_sweep.sweep"  # the sweep's name, on its parent run
EXPERIMENT_PATH_TAG = "tucker_sweep.experiment_path"  # Ray Tune's results, on the parent run
TRIAL_ID_TAG = "tucker_sweep.trial_id"  # Tune's trial id, on a trial's run
STOP_REASON_TAG = "tucker_sweep.stop_reason"  # completed | stopped_early | failed
NODES_TAG = "tucker_sweep.nodes"  # comma-separated IPs of the Ray nodes that ran a trial
EPOCH_METRICS = ("val_acc", "val_loss", "train_loss", "train_acc")
# Trial seconds at each epoch (Tune's time_total_s), kept so that seconds_to_target can be
# recomputed after a resume.
SECONDS_METRIC = "trial_seconds"
