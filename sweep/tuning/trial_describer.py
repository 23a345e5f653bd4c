"""What a trial's MLflow run records of its plan before it trains: its params and its cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightning_modules.data import DataShape
from lightning_modules.nets import decompose, model_cost
from sweep.builders import dense_model
from sweep.config import SweepConfig
from sweep.space import RankSpace
from sweep.tracking.names import ESTIMATED_ERROR_METRIC
from sweep.trial_params import trial_params


@dataclass(frozen=True)
class TrialDescriber:
    """Trial config -> (MLflow params, static metrics: cost, and in budget mode the allocator's
    estimated error). Picklable: Tune stores it with the tracking callback in its experiment
    state."""

    config: SweepConfig
    space: RankSpace
    data_shape: DataShape

    def __call__(self, trial_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
        plan = self.space.decode(trial_config)
        params = trial_params(plan.rank_plan, plan.lr, plan.init, trial_config)
        shape = self.data_shape
        model = dense_model(self.config, shape)
        decompose(model, plan.rank_plan, init="random")
        cost = model_cost(model, shape.input_shape)
        metrics = {"params": cost.params, "flops": cost.flops, "compression": cost.compression}
        if plan.estimated_error is not None:
            metrics[ESTIMATED_ERROR_METRIC] = plan.estimated_error
        return params, metrics
