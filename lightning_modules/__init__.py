"""Tucker CNNs in PyTorch and Lightning, and the maths of choosing their ranks.

    tucker/   the TuckerConv2d layer: execution paths, cost model, autotuning, HOOI
    inference/ inference_form(model, example): Tucker layers as plain modules, fastest form
              by timing; latency timed side by side
    ranks/    mode spectra, energy and VBMF ranks, candidate triples per layer
    nets/     CNNs by name, decomposable convs, rank plans, decompose(model, plan), costs
    data/     LightningDataModules (digits, mnist, fashion_mnist, cifar10, npz)
    module.py TuckerClassifier, the LightningModule; trainer.py the one Trainer factory

This package knows nothing of Ray, MLflow or the `sweep` service (an import-linter contract
in pyproject.toml keeps it so). docs/design.md holds the maths it implements.
"""

__all__ = ["inference_form"]


def __getattr__(name: str) -> object:
    # `from lightning_modules import inference_form`, without importing torch for the
    # submodules that do not need it (the config's imports).
    if name == "inference_form":
        from lightning_modules.inference import inference_form

        return inference_form
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
