"""A multi-worker Tune trial that trains nothing: its Ray Train workers only report, so that a
test can see what becomes of them when Tune stops the trial. Never part of the product."""

from __future__ import annotations

from typing import Any

import ray.train

from sweep.config import SweepConfig
from sweep.tuning.train_in_trial import ReleasesTrainWorkers, TrainRunInTrial
from sweep.tuning.train_run import new_run_name

REPORTS = 50  # more than any test lets the trial report


def keep_reporting(_loop_config: dict[str, Any]) -> None:
    for epoch in range(REPORTS):
        ray.train.report({"epoch": epoch})


def probe_trial(_trial_config: dict[str, Any], config: SweepConfig, storage_path: str) -> None:
    TrainRunInTrial(config, storage_path, new_run_name("probe")).fit(keep_reporting, {})


probe_trial.__mixins__ = (ReleasesTrainWorkers,)  # type: ignore[attr-defined]
