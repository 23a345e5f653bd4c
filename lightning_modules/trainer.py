"""The one Trainer factory: how every fit in the project (sweep trials, the dense baseline,
`tucker-sweep train`) configures Lightning, so that they differ only where they must."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger

from lightning_modules.execution import ExecutionSetup
from lightning_modules.execution_callback import execution_callbacks


def make_trainer(
    max_epochs: int,
    *,
    callbacks: Sequence[pl.Callback] = (),
    logger: Logger | bool = False,
    accelerator: str = "auto",
    progress_bar: bool = False,
    checkpointing: bool = False,
    sanity_val_steps: int = 0,
    log_every_n_steps: int = 50,
    execution: ExecutionSetup | None = None,
) -> pl.Trainer:
    """A single-device Trainer. `accelerator="auto"` takes the GPU the process was given (Ray
    sets CUDA_VISIBLE_DEVICES for a trial), else the CPU. Checkpointing is off unless asked:
    in a sweep Ray Tune owns the checkpoints. `execution`: precision, compilation and memory
    format (default: fp32 eager)."""
    execution = execution or ExecutionSetup()
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        precision=execution.precision,
        callbacks=[*execution_callbacks(execution), *callbacks],
        logger=logger,
        enable_checkpointing=checkpointing,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=sanity_val_steps,
        log_every_n_steps=log_every_n_steps,
    )
