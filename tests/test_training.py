"""Real Lightning training on the bundled digits: dense and Tucker CNNs, HOOI, checkpoints."""

import lightning.pytorch as pl
import pytest
import torch

from lightning_modules.data import make_datamodule
from lightning_modules.evaluation import BestValidationWeights, accuracy
from lightning_modules.module import NonFiniteLossError, TuckerClassifier
from lightning_modules.nets import uniform_plan
from lightning_modules.tucker import TuckerConv2d

EPOCHS = 15


def fit(classifier: TuckerClassifier, epochs: int = EPOCHS, **trainer_options) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_options,
    )
    trainer.fit(classifier, datamodule=make_datamodule("digits", seed=0, batch_size=64))
    return trainer


def digits_classifier(**options) -> TuckerClassifier:
    return TuckerClassifier(
        "vgg_small", in_channels=1, num_classes=10, input_size=(8, 8), max_epochs=EPOCHS, **options
    )


@pytest.fixture(scope="module")
def trained_dense() -> tuple[TuckerClassifier, pl.Trainer]:
    pl.seed_everything(0, verbose=False)
    classifier = digits_classifier()
    return classifier, fit(classifier)


@pytest.mark.slow
def test_dense_and_tucker_half_ranks_both_learn_digits(trained_dense):
    dense, dense_trainer = trained_dense
    assert float(dense_trainer.callback_metrics["val_acc"]) >= 0.90

    pl.seed_everything(0, verbose=False)
    plan = uniform_plan(dense.model, 0.5)
    tucker = digits_classifier(rank_plan=plan)
    assert sum(isinstance(m, TuckerConv2d) for m in tucker.modules()) == len(plan) == 5
    tucker_trainer = fit(tucker)
    assert float(tucker_trainer.callback_metrics["val_acc"]) >= 0.90
    assert tucker.cost.params < dense.cost.params
    assert tucker.cost.compression > 3


@pytest.mark.slow
def test_full_rank_hooi_keeps_the_trained_models_predictions(trained_dense):
    dense, _ = trained_dense
    dense.eval()
    images, _ = make_datamodule("digits", seed=0).val_tensors()
    with torch.no_grad():
        expected = dense(images)
    tucker = TuckerClassifier.from_dense(dense, uniform_plan(dense.model, "full"), init="hooi")
    tucker.eval()
    assert max(tucker.reconstruction_errors.values()) < 1e-5
    with torch.no_grad():
        torch.testing.assert_close(tucker(images), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_checkpoint_rebuilds_the_tucker_architecture_with_weights_only(trained_dense, tmp_path):
    dense, _ = trained_dense
    tucker = TuckerClassifier.from_dense(dense, uniform_plan(dense.model, 0.25), lr=0.01)
    trainer = fit(tucker, epochs=1, default_root_dir=tmp_path)
    path = tmp_path / "tucker.ckpt"
    trainer.save_checkpoint(path)
    # weights_only=True: plain tensors and containers only, no pickled code.
    restored = TuckerClassifier.load_from_checkpoint(path, weights_only=True)
    assert restored.hparams.rank_plan == tucker.hparams.rank_plan
    assert restored.hparams.lr == 0.01
    assert {n: m.ranks for n, m in restored.named_modules() if isinstance(m, TuckerConv2d)} == {
        n: m.ranks for n, m in tucker.named_modules() if isinstance(m, TuckerConv2d)
    }
    images = torch.randn(4, 1, 8, 8)
    tucker.eval()
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(images), tucker(images))


def test_diverging_training_fails_with_a_clear_error():
    pl.seed_everything(0, verbose=False)
    classifier = digits_classifier(lr=1e6, schedule="constant")
    with pytest.raises(NonFiniteLossError, match="training diverged"):
        fit(classifier, epochs=3)


def test_bad_hyper_parameters_are_refused():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        digits_classifier(optimizer="lbfgs")
    with pytest.raises(ValueError, match="lr must be a positive number"):
        digits_classifier(lr=float("nan"))


def test_the_best_validation_epoch_is_kept_and_judged_on_the_test_split(tmp_path):
    pl.seed_everything(0, verbose=False)
    classifier = digits_classifier(lr=0.3)  # a high rate: validation accuracy wanders
    best = BestValidationWeights()
    history = []

    class Record(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            history.append(float(trainer.callback_metrics["val_acc"]))

    trainer = fit(classifier, 5, callbacks=[best, Record()])
    assert best.best_epoch == 1 + max(range(len(history)), key=lambda i: (history[i], -i))
    assert best.best_score == pytest.approx(max(history))
    datamodule = trainer.datamodule
    final = {k: v.clone() for k, v in classifier.state_dict().items()}
    test_acc = best.evaluate_best(classifier, datamodule.test_dataloader())
    # The module keeps its final weights; the figure is that of the best epoch's weights.
    assert all(torch.equal(final[k], v) for k, v in classifier.state_dict().items())
    best_model = digits_classifier(lr=0.3)
    best_model.load_state_dict(best.best_state)
    assert test_acc == accuracy(best_model, datamodule.test_dataloader())
    assert accuracy(best_model, datamodule.val_dataloader()) == pytest.approx(best.best_score)
    # Its state travels in Lightning checkpoints, so a resumed fit keeps its best epoch.
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]
    restored = BestValidationWeights()
    (state,) = [value for key, value in saved.items() if "BestValidationWeights" in key]
    restored.load_state_dict(state)
    assert (restored.best_epoch, restored.best_score) == (best.best_epoch, best.best_score)
