"""`tucker-sweep seed` end to end on real weights, data and MLflow (no mocks): given weights are
analysed as they are, the seed holds the spectra's error bound for every candidate, and the
dense model's latency is measured at every deploy batch size and logged on the baseline run."""

import lightning
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from lightning_modules.data import DataShape
from lightning_modules.module import TuckerClassifier
from lightning_modules.ranks import ModeSpectra, error_bound
from sweep.builders import classifier_options, sweep_datamodule
from sweep.config import SweepConfig
from sweep.seeding.seed import seed_command
from sweep.seeding.seed_file import SCHEMA_VERSION, read_seed
from sweep.tracking.names import latency_metric

BATCHES = [1, 4]


def _config(tmp_path, **model) -> SweepConfig:
    return SweepConfig.model_validate({
        "model": {"name": "vgg_small", **model},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "seed-test"},
        "deploy": {"batch_sizes": BATCHES},
    })  # fmt: skip


def _check_outcome(outcome, tmp_path) -> None:
    seed = read_seed(outcome.artifacts.seed_path)
    assert seed.schema_version == SCHEMA_VERSION == 2
    assert outcome.artifacts.plot_path.stat().st_size > 20_000
    assert seed.layer_names()[0] == "block1.conv2", "the input conv is not analysed"
    for layer in seed.layers.values():
        modes = (layer.spectra.out, layer.spectra.in_, layer.spectra.spatial)
        spectra = ModeSpectra(*(np.asarray(values) for values in modes))
        bounds = [candidate.error_bound for candidate in layer.candidates]
        expected = [error_bound(spectra, candidate.ranks) for candidate in layer.candidates]
        assert bounds == pytest.approx(expected, rel=1e-12)
        # Three shares of at most 1 each: above 1 only where a triple leaves out most of every
        # mode (a random kernel's flat spectra at low thresholds).
        assert all(0.0 <= bound <= 3**0.5 for bound in bounds)
    assert list(outcome.dense_latency.ms) == BATCHES == list(outcome.dense_latency.rounds)
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    for batch in BATCHES:
        logged = run.data.metrics[latency_metric(batch)]
        assert logged == pytest.approx(outcome.dense_latency.ms[batch]) and logged > 0


def test_seed_from_model_checkpoint_weights(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "weights.pt"
    config = _config(tmp_path, checkpoint=str(weights))
    shape = DataShape.of(sweep_datamodule(config))
    classifier = TuckerClassifier(**classifier_options(config, shape, 0.05))
    torch.save(classifier.model.state_dict(), weights)
    outcome = seed_command(config, tmp_path / "seed")
    _check_outcome(outcome, tmp_path)
    assert 0.0 <= outcome.baseline_val_acc <= 1.0


def test_seed_from_a_lightning_checkpoint_evaluates_it_batch_by_batch(tmp_path):
    """--checkpoint: the checkpoint's own validation accuracy, over the whole split."""
    torch.manual_seed(0)
    config = _config(tmp_path)
    datamodule = sweep_datamodule(config)
    shape = DataShape.of(datamodule)
    classifier = TuckerClassifier(**classifier_options(config, shape, 0.05))
    path = tmp_path / "dense.ckpt"
    torch.save({"pytorch-lightning_version": lightning.__version__,
                "hyper_parameters": dict(classifier.hparams),
                "state_dict": classifier.state_dict()}, path)  # fmt: skip
    outcome = seed_command(config, tmp_path / "seed", checkpoint=path)
    _check_outcome(outcome, tmp_path)
    images, labels = datamodule.val_tensors()
    with torch.no_grad():
        expected = float((classifier.eval()(images).argmax(dim=1) == labels).float().mean())
    assert outcome.baseline_val_acc == pytest.approx(expected)
