"""The Lightning callback that applies an ExecutionSetup's memory format and compilation."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lightning_modules.execution import ExecutionSetup


def execution_callbacks(setup: ExecutionSetup) -> list[pl.Callback]:
    """What a Trainer needs for `setup` beyond its precision flag (nothing for eager NCHW)."""
    if not setup.channels_last and setup.compile == "off":
        return []
    return [ApplyExecutionSetup(setup)]


def _to_channels_last(_module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


class ApplyExecutionSetup(pl.Callback):
    """Puts the classifier's network in channels-last memory format (inputs converted by a
    forward pre-hook, whatever loader they came from) and compiles it in place, once, before
    the fit. `nn.Module.compile` keeps the parameter names, so checkpoints and exports are
    those of the eager model."""

    def __init__(self, setup: ExecutionSetup) -> None:
        self.setup_options = setup

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        network = getattr(pl_module, "model", pl_module)
        if getattr(network, "_execution_setup_applied", False):
            return  # a second fit of the same module (e.g. after a test run)
        if self.setup_options.channels_last:
            network.to(memory_format=torch.channels_last)
            network.register_forward_pre_hook(_to_channels_last)
        mode = self.setup_options.compile
        if mode != "off":
            network.compile(mode=None if mode == "default" else mode)
        network._execution_setup_applied = True
