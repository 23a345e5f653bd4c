"""Export a sweep's recommended trial (or a chosen one) for use outside the sweep, and prove it
works.

    exports/<sweep>/<trial name>/
      model.ckpt             the Lightning checkpoint (TuckerClassifier.load_from_checkpoint)
      state_dict.pt          plain weights of the network (torch.load(..., weights_only=True))
      compressed.pt          the TuckerConv2d network for the user's own model (load_compressed)
      model.json             what rebuilds the network: model, options, rank plan, input shape,
                             the normalisation the inputs need, where it came from, the form of
                             each Tucker layer and the latency measured against dense
      model.torchscript.pt   the inference form, traced (torch.jit.load)
      model.onnx             the inference form for ONNX Runtime, any batch size

The trial is the report's recommended one (sweep.report: the smallest plan within --max-drop of
dense) unless --trial names one. The checkpoint is the trial's best-scoring one that Tune kept
(it keeps the best by val_acc and the latest per trial); its epoch's logged val_acc is the
reference. The inference form (lightning_modules.inference) has every Tucker layer as plain
convolutions in whichever form ran fastest on the CPU at every deployment batch size. The
checkpoint, the TorchScript file and the ONNX file (run by ONNX Runtime) are evaluated on the
validation split, rebuilt from the sweep's stored config (same seed, same split), and must
reproduce that accuracy. The files are logged on the trial's MLflow run under export/ and
registered in the MLflow Model Registry with the ranks as tags.

    trial.py        export_trial: choose, write, check, register
    deployable.py   the inference form, written as TorchScript and ONNX, evaluated and timed
    torchscript.py  trace, compare with the eager network; onnx_file.py export, run with ORT
    latency.py      dense against compressed per batch size and runtime
    checks.py       the accuracy check; model_card.py model.json; registry.py the registry
"""

from sweep.export.checks import ExportCheckError
from sweep.export.trial import ExportOutcome, export_trial

__all__ = ["ExportCheckError", "ExportOutcome", "export_trial"]
