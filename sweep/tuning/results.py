"""How many trials of a sweep ended, read back from the experiment state Tune saved, through
Tune's public API (ExperimentAnalysis). Only the launcher reads it, on storage it trusts (see
sweep.sweep_files.trust): the state embeds cloudpickled objects. The tools read results and
checkpoints without it (sweep.sweep_files.trial_files)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ray.tune import ExperimentAnalysis

from sweep.errors import ReportError, first_line


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
