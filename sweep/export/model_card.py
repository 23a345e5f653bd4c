"""model.json: what rebuilds an exported network and where it came from."""

from __future__ import annotations

from typing import Any

import torch

from lightning_modules.data import ClassificationDataModule
from lightning_modules.module import TuckerClassifier
from sweep.export.deployable import Deployable
from sweep.export.onnx_file import INPUT_NAME
from sweep.tracking.redact import redact
from sweep.tracking.sweep_runs import RunRecord, SweepRuns

# v2: "forms" (the inference form's layers) for "implementations", model.onnx, "latency" and
# "val_acc_checked"
FORMAT = "tucker-sweep export v2"
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
RUN_TORCHSCRIPT = "torch.jit.load('model.torchscript.pt')(normalised_images)"
RUN_ONNX = (
    "onnxruntime.InferenceSession('model.onnx').run(None, "
    f"{{'{INPUT_NAME}': normalised_images.numpy()}})[0]"
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
    checkpoint_accuracy: float,
    deployable: Deployable,
    test_accuracy: float | None = None,
) -> dict[str, Any]:
    """model.json: `accuracy` is the val acc the trial logged at `epoch`; the exported files'
    own val acc on the rebuilt split is recorded beside it."""
    hp = classifier.hparams
    return {
        "format": FORMAT,
        "model_name": hp.model_name,
        "model_options": dict(hp.model_options or {}),
        "in_channels": hp.in_channels,
        "num_classes": hp.num_classes,
        "input_shape": [hp.in_channels, *hp.input_size],
        "rank_plan": {name: list(ranks) for name, ranks in (hp.rank_plan or {}).items()},
        "forms": deployable.forms,
        "normalisation": {
            "mean": [float(v) for v in torch.as_tensor(datamodule.mean).flatten()],
            "std": [float(v) for v in torch.as_tensor(datamodule.std).flatten()],
            "note": "inputs are (x - mean) / std per channel, as in training",
        },
        "rebuild": REBUILD,
        "rebuild_own_model": REBUILD_OWN_MODEL,
        "run_torchscript": RUN_TORCHSCRIPT,
        "run_onnx": RUN_ONNX,
        "val_acc_checked": {
            "logged": accuracy,
            "checkpoint": checkpoint_accuracy,
            "torchscript": deployable.torchscript_val_acc,
            "onnxruntime": deployable.onnx_val_acc,
        },
        "latency": deployable.latency.as_json(),
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
