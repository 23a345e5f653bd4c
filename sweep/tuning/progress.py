"""A sweep's progress as one small snapshot, from Tune's trial list, for a live view.

Tune's own reporter prints every trial's config and a full status table every 30 s: thousands
of lines for a 24-trial sweep. This callback condenses the same trial list into a
SweepProgress (counts, the best val_acc so far and its compression, elapsed time, an ETA) and
hands it to whoever displays it (the CLI); it prints nothing itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

TRAINING_ITERATION = "training_iteration"  # Tune's count of a trial's reports (epochs)


@dataclass(frozen=True)
class SweepProgress:
    """Where a sweep's trials stand."""

    total: int  # trials the sweep will run
    completed: int  # ran to max_t
    stopped_early: int  # stopped by the scheduler (ASHA) before max_t
    failed: int
    running: int
    best_val_acc: float | None
    best_compression: float | None
    elapsed_s: float
    eta_s: float | None  # None until a trial has ended

    @property
    def ended(self) -> int:
        return self.completed + self.stopped_early + self.failed

    def line(self) -> str:
        """One plain line, for logs and terminals alike."""
        best = (
            "best val_acc -"
            if self.best_val_acc is None
            else f"best val_acc {self.best_val_acc:.4f} at {self.best_compression or 1:.2f}x"
        )
        eta = "" if self.eta_s is None else f", ETA ~{_duration(self.eta_s)}"
        return (
            f"trials {self.ended}/{self.total} ended ({self.completed} completed, "
            f"{self.stopped_early} stopped early, {self.failed} failed), {self.running} running"
            f" | {best} | {_duration(self.elapsed_s)}{eta}"
        )


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def _best_val_acc(trial: Trial) -> float | None:
    value = trial.metric_analysis.get("val_acc", {}).get("max")
    return None if value is None or not math.isfinite(value) else float(value)


def snapshot(
    trials: Sequence[Trial], total: int, max_t: int, elapsed_s: float, ended_before: int
) -> SweepProgress:
    """The progress of `trials` (of `total`). `ended_before`: trials that had ended when this
    run of the driver started (a resumed sweep), left out of the ETA's rate."""
    completed = stopped = failed = running = 0
    best: tuple[float, float | None] | None = None
    for trial in trials:
        if trial.status == Trial.ERROR:
            failed += 1
        elif trial.status == Trial.TERMINATED:
            iterations = trial.last_result.get(TRAINING_ITERATION, 0)
            if iterations >= max_t:
                completed += 1
            else:
                stopped += 1
        elif trial.status == Trial.RUNNING:
            running += 1
        accuracy = _best_val_acc(trial)
        if accuracy is not None and (best is None or accuracy > best[0]):
            best = (accuracy, trial.last_result.get("compression"))
    ended = completed + stopped + failed
    ended_now = ended - ended_before
    eta = None
    if ended_now > 0 and ended < total:
        eta = elapsed_s / ended_now * (total - ended)
    return SweepProgress(
        total=max(total, len(trials)),
        completed=completed,
        stopped_early=stopped,
        failed=failed,
        running=running,
        best_val_acc=None if best is None else best[0],
        best_compression=None if best is None else best[1],
        elapsed_s=elapsed_s,
        eta_s=eta,
    )


# Where snapshots go: set by the driver for the length of a sweep. Not an attribute of the
# callback because Tune pickles its callbacks with the experiment (tuner.pkl) and unpickles them
# on resume; a live display (a terminal, threads) neither pickles nor should outlive its process.
_display: Callable[[SweepProgress], None] | None = None


def set_display(show: Callable[[SweepProgress], None] | None) -> None:
    """Send this process's sweep progress to `show` (None: nowhere)."""
    global _display
    _display = show


class ProgressCallback(tune.Callback):
    """Hands a SweepProgress to the display (set_display) when a trial starts or ends, and
    otherwise at most every `min_interval_s` (a result per epoch per trial would redraw
    needlessly). Nothing at the experiment's end: after a stop, Tune marks the trials it
    stopped as terminated, which would read as stopped early."""

    def __init__(self, total: int, max_t: int, min_interval_s: float = 1.0) -> None:
        self.total = total
        self.max_t = max_t
        self.min_interval_s = min_interval_s
        self._reset()

    def _reset(self) -> None:
        self.started = time.monotonic()
        self.last_shown = -math.inf
        self.ended_before: int | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled on resume: time and counts start again in this process.
        self.__dict__.update(state)
        self._reset()

    def _emit(self, trials: Sequence[Trial], force: bool) -> None:
        if _display is None:
            return
        now = time.monotonic()
        if self.ended_before is None:
            self.ended_before = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        if not force and now - self.last_shown < self.min_interval_s:
            return
        self.last_shown = now
        elapsed = now - self.started
        _display(snapshot(trials, self.total, self.max_t, elapsed, self.ended_before))

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._emit(trials, force=False)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self._emit(trials, force=True)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._emit(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self._emit(trials, force=True)
