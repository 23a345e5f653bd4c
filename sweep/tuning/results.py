"""Reading a sweep's Ray Tune results back through Tune's public API (ExperimentAnalysis,
ResultGrid, Result, Checkpoint), never through the layout of its folders."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from ray import tune
from ray.tune import ExperimentAnalysis, ResultGrid

from sweep.errors import ReportError, first_line
from sweep.tuning.epoch_report import CHECKPOINT_FILE


@contextmanager
def _quiet_analysis() -> Iterator[None]:
    # Trials that never reported have no result files, which ExperimentAnalysis warns about.
    analysis_logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_logger.level
    analysis_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        analysis_logger.setLevel(level)


def _analysis(experiment_path: str) -> ExperimentAnalysis:
    """Tune's saved state of the experiment, or a ReportError that says where to look."""
    with _quiet_analysis():
        try:
            return ExperimentAnalysis(experiment_path)
        except (ValueError, OSError) as error:
            raise ReportError(
                f"no Ray Tune results in {experiment_path} ({first_line(error)}): pass "
                "--storage-path (the cluster.storage_path the sweep ran with, e.g. ./ray_results)"
            ) from None


def finished_trials(experiment_path: str) -> int:
    """Trials that ended (completed, stopped early or failed) in the experiment state Tune
    saved last. Read back from storage because, after Ctrl-C, Tune's in-memory trials are all
    marked TERMINATED by its cleanup while the saved state keeps them pending."""
    trials = _analysis(experiment_path).trials
    return sum(trial.status in ("TERMINATED", "ERROR") for trial in trials)


@dataclass(frozen=True)
class KeptCheckpoint:
    """A checkpoint Tune kept for a trial, and the epoch (training_iteration) it was saved at."""

    checkpoint: tune.Checkpoint
    epoch: int

    @contextmanager
    def lightning_file(self) -> Iterator[Path]:
        """The Lightning checkpoint file, local for the duration (downloaded if remote)."""
        with self.checkpoint.as_directory() as folder:
            yield Path(folder) / CHECKPOINT_FILE


def _saved_epoch(checkpoint: tune.Checkpoint) -> int:
    """The epoch a Lightning checkpoint was saved at, from the checkpoint itself: Lightning
    stores the 0-based epoch that was ending."""
    with KeptCheckpoint(checkpoint, 0).lightning_file() as path:
        saved = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    return int(saved["epoch"]) + 1


def kept_checkpoints(experiment_path: str, trial_id: str) -> list[KeptCheckpoint]:
    """The checkpoints Tune kept for the trial (the best by val_acc and the latest), oldest
    first; empty if it has none."""
    with _quiet_analysis():
        results = ResultGrid(_analysis(experiment_path))
    for result in results:
        if result.metrics.get("trial_id") != trial_id:
            continue
        kept = {
            checkpoint.path: KeptCheckpoint(checkpoint, int(metrics["training_iteration"]))
            for checkpoint, metrics in result.best_checkpoints
        }
        latest = result.checkpoint
        if latest is not None and latest.path not in kept:
            kept[latest.path] = KeptCheckpoint(latest, _saved_epoch(latest))
        return sorted(kept.values(), key=lambda kept_one: kept_one.epoch)
    return []


def choose_kept(
    kept: list[KeptCheckpoint], val_acc: dict[int, float]
) -> tuple[KeptCheckpoint, float]:
    """The kept checkpoint with the best logged val_acc at its epoch (ties: the later), and
    that val_acc. ReportError when no kept checkpoint has a logged val_acc."""
    scored = [(val_acc[c.epoch], c.epoch, c) for c in kept if c.epoch in val_acc]
    if not scored:
        epochs = ", ".join(str(c.epoch) for c in kept) or "none"
        raise ReportError(f"no logged val_acc for the kept checkpoints (epochs {epochs})")
    logged, _, checkpoint = max(scored, key=lambda item: item[:2])
    return checkpoint, logged
