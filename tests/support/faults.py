"""Fault injection for sweeps, through the launcher's public extension point
(`launch_sweep(..., trial_callbacks=...)`): trials that raise at the start of an epoch, and a
slow device. Used by launch_with_faults.py; never part of the product."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import lightning.pytorch as pl
from ray import tune


class InjectedFault(RuntimeError):
    """Raised on purpose by fault injection."""


class RaiseAtEpoch(pl.Callback):
    """Makes the listed trials (by Tune's creation index, 0-based) raise at the start of
    `epoch`: on every attempt (`permanent`), or only on an attempt that started from scratch
    (`transient`). A retry resumes from the checkpoint of an earlier epoch, which is how it is
    told from the first attempt on any node."""

    def __init__(self, epoch: int, transient: tuple[int, ...], permanent: tuple[int, ...]) -> None:
        self.epoch = epoch
        self.transient = transient
        self.permanent = permanent
        self.resumed = False

    def setup(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        # Before the trial's first report: afterwards get_checkpoint() is its latest one.
        self.resumed = tune.get_checkpoint() is not None

    def on_train_epoch_start(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        # Tune names trials <trainable>_<experiment>_<index>.
        index = int(tune.get_context().get_trial_name().rsplit("_", 1)[-1])
        if trainer.current_epoch != self.epoch:
            return
        if index in self.permanent or (index in self.transient and not self.resumed):
            raise InjectedFault(f"injected fault at epoch {self.epoch} of trial {index}")


class DelayedEpochs(pl.Callback):
    """Starts every training epoch with a pause of `seconds`: a slow device, so that a test
    can act while trials are mid-way however fast the machine is."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_epoch_start(self, _trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        time.sleep(self.seconds)


@dataclass(frozen=True)
class FaultPlan:
    """Which faults a sweep's trials meet. `epoch` is 1 or later, so that a retry can resume
    from a checkpoint."""

    epoch: int = 1
    transient: tuple[int, ...] = ()
    permanent: tuple[int, ...] = ()
    epoch_delay_seconds: float = 0.0
    # The driver pauses this long before it shuts Ray down at the end (launch_with_faults), so
    # that a test's signal lands in that step however fast the machine is.
    shutdown_delay_seconds: float = 0.0

    def trial_callbacks(self) -> list[Callable[[], pl.Callback]]:
        factories: list[Callable[[], pl.Callback]] = []
        if self.transient or self.permanent:
            factories.append(
                partial(RaiseAtEpoch, self.epoch, tuple(self.transient), tuple(self.permanent))
            )
        if self.epoch_delay_seconds:
            factories.append(partial(DelayedEpochs, self.epoch_delay_seconds))
        return factories
