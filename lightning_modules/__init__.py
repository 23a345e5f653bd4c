"""Tucker CNNs in PyTorch and Lightning, and the maths of choosing their ranks.

    tucker/   the TuckerConv2d layer: execution paths, cost model, autotuning, HOOI
    ranks/    mode spectra, energy and VBMF ranks, candidate triples per layer
    nets/     CNNs by name, decomposable convs, rank plans, decompose(model, plan), costs
    data/     LightningDataModules (digits, mnist, fashion_mnist, cifar10, npz)
    module.py TuckerClassifier, the LightningModule; trainer.py the one Trainer factory

This package knows nothing of Ray, MLflow or the `sweep` service (an import-linter contract
in pyproject.toml keeps it so). docs/design.md holds the maths it implements.
"""
