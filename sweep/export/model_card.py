"""model.json: what rebuilds an exported network and where it came from."""

from __future__ import annotations

from typing import Any

import torch

from lightning_modules.data import ClassificationDataModule
from lightning_modules.module import TuckerClassifier
from sweep.tracking.redact import redact
from sweep.tracking.sweep_runs import RunRecord, SweepRuns

FORMAT = "tucker-sweep export v1"
REBUILD = (
    "from lightning_modules.nets import build_model, decompose; "
    "net = build_model(model_name, in_channels, num_classes, **model_options); "
    "decompose(net, rank_plan, init='random'); "
    "net.load_state_dict(torch.load('state_dict.pt', weights_only=True))"
)


REBUILD_OWN_MODEL = (
    "from lightning_modules.tucker import load_compressed; "
    "net = load_compressed(your_factory_or_module, 'compressed.pt')"
)


def comparison(
    classifier: TuckerClassifier, runs: SweepRuns, val_acc: float, test_acc: float | None
) -> dict[str, dict[str, float | None]]:
    """Parameters, FLOPs and accuracy (val, test) of the sweep's dense reference (the user's
    original model when the sweep started from a checkpoint) and of this compressed model."""
    baseline = runs.baseline
    metrics = baseline.metrics if baseline is not None else {}
    cost = classifier.cost
    return {
        "original": {
            "params": metrics.get("params", cost.dense_params),
            "flops": metrics.get("flops"),
            "val_acc": metrics.get("best_val_acc"),
            "test_acc": metrics.get("test_acc"),
        },
        "compressed": {
            "params": cost.params,
            "flops": cost.flops,
            "val_acc": val_acc,
            "test_acc": test_acc,
        },
    }


def model_card(
    classifier: TuckerClassifier,
    datamodule: ClassificationDataModule,
    runs: SweepRuns,
    trial: RunRecord,
    epoch: int,
    accuracy: float,
    implementations: dict[str, str],
    test_accuracy: float | None = None,
) -> dict[str, Any]:
    hp = classifier.hparams
    return {
        "format": FORMAT,
        "model_name": hp.model_name,
        "model_options": dict(hp.model_options or {}),
        "in_channels": hp.in_channels,
        "num_classes": hp.num_classes,
        "input_shape": [hp.in_channels, *hp.input_size],
        "rank_plan": {name: list(ranks) for name, ranks in (hp.rank_plan or {}).items()},
        "implementations": implementations,
        "normalisation": {
            "mean": [float(v) for v in torch.as_tensor(datamodule.mean).flatten()],
            "std": [float(v) for v in torch.as_tensor(datamodule.std).flatten()],
            "note": "inputs are (x - mean) / std per channel, as in training",
        },
        "rebuild": REBUILD,
        "rebuild_own_model": REBUILD_OWN_MODEL,
        "comparison": comparison(classifier, runs, accuracy, test_accuracy),
        "source": {
            "sweep": runs.name,
            "sweep_run_id": runs.parent.run_id,
            "trial_name": trial.trial_name,
            "trial_run_id": trial.run_id,
            "epoch": epoch,
            "val_acc": accuracy,
            "data": runs.config.get("data"),
            "tracking_uri": redact(runs.tracking_uri),  # a file people share: no password
        },
    }
