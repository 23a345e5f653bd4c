"""Export a sweep's best trial (or a chosen one) for use outside the sweep, and prove it works.

    exports/<sweep>/<trial name>/
      model.ckpt             the Lightning checkpoint (TuckerClassifier.load_from_checkpoint)
      state_dict.pt          plain weights of the network (torch.load(..., weights_only=True))
      model.json             what rebuilds the network: model, options, rank plan, input shape,
                             the normalisation the inputs need, and where it came from
      model.torchscript.pt   the network traced with a fixed path per Tucker layer (torch.jit.load)

The checkpoint is the trial's best-scoring one that Tune kept (it keeps the best by val_acc and
the latest per trial); its epoch's logged val_acc is the reference. The checkpoint and the
TorchScript file are evaluated on the validation split, rebuilt from the sweep's stored config
(same seed, same split), and must reproduce that accuracy. The files are logged on the trial's
MLflow run under export/ and registered in the MLflow Model Registry with the ranks as tags.

    trial.py        export_trial: choose, write, check, register
    torchscript.py  pin each Tucker layer's path, trace, compare with the eager network
    checks.py       the accuracy check; model_card.py model.json; registry.py the registry
"""

from sweep.export.checks import ExportCheckError
from sweep.export.trial import ExportOutcome, export_trial

__all__ = ["ExportCheckError", "ExportOutcome", "export_trial"]
