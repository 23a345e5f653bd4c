"""The one Trainer factory: how every fit in the project (sweep trials, the dense baseline,
`tucker-sweep train`) configures Lightning, so that they differ only where they must.

A fit runs on one device unless the code around it runs it distributed: inside
`distributed_fits(distribution)`, every Trainer made here is one rank of a data-parallel run
as `distribution` says (a DDP strategy and the cluster environment of the processes' launcher,
given by whoever launched them). The code that fits (a trial, the baseline's two phases) is
the same either way."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import Strategy

from lightning_modules.execution import ExecutionSetup
from lightning_modules.execution_callback import execution_callbacks


def _as_built(trainer: pl.Trainer) -> pl.Trainer:
    return trainer


@dataclass(frozen=True)
class Distribution:
    """How the Trainers of a process run as ranks of one data-parallel fit. `strategy` and
    `plugins` make fresh objects for each Trainer (a strategy holds the state of the fit it
    runs); `prepare` sees each Trainer once it is built."""

    strategy: Callable[[], Strategy]
    plugins: Callable[[], list[Any]] = list
    prepare: Callable[[pl.Trainer], pl.Trainer] = _as_built


# A context variable, not a module global: it holds for the thread (and block) that set it.
_distribution: ContextVar[Distribution | None] = ContextVar("distribution", default=None)


@contextmanager
def distributed_fits(distribution: Distribution) -> Iterator[None]:
    """Within the block, make_trainer builds ranks of a `distribution` fit."""
    token = _distribution.set(distribution)
    try:
        yield
    finally:
        _distribution.reset(token)


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
    """A single-device Trainer, or one rank of a distributed fit within `distributed_fits`.
    `accelerator="auto"` takes the GPU the process was given (Ray sets CUDA_VISIBLE_DEVICES for
    a trial or a worker), else the CPU. Checkpointing is off unless asked: in a sweep Ray Tune
    owns the checkpoints. `execution`: precision, compilation and memory format (default:
    fp32 eager)."""
    execution = execution or ExecutionSetup()
    distribution = _distribution.get()
    placement: dict[str, Any] = {"devices": 1}
    if distribution is not None:
        # The strategy's cluster environment says which rank and world this process is; each
        # process drives the one device it was given.
        placement = {
            "devices": "auto",
            "strategy": distribution.strategy(),
            "plugins": distribution.plugins(),
        }
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        precision=execution.precision,
        callbacks=[*execution_callbacks(execution), *callbacks],
        logger=logger,
        enable_checkpointing=checkpointing,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=sanity_val_steps,
        log_every_n_steps=log_every_n_steps,
        **placement,
    )
    return trainer if distribution is None else distribution.prepare(trainer)
