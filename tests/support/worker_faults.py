"""A lost Ray Train worker, for multi-worker sweeps: a Lightning callback (given to every
trial through `launch_sweep(..., trial_callbacks=...)`) that ends its process the way a crash
or a lost node does, with no cleanup and no exception to catch. Never part of the product."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl


class ExitOnceOnRank(pl.Callback):
    """At the start of 0-based `epoch`, on DDP rank `rank`, ends the process (os._exit), once
    in the whole sweep: the first process to get there creates `marker` and exits; every later
    one (the retried attempt, the other trials) finds it and trains on."""

    def __init__(self, rank: int, epoch: int, marker: str) -> None:
        self.rank = rank
        self.epoch = epoch
        self.marker = marker

    def on_train_epoch_start(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        if trainer.global_rank != self.rank or trainer.current_epoch != self.epoch:
            return
        try:
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(descriptor, f"{os.getpid()}\n".encode())
        os.close(descriptor)
        os._exit(1)


def marker_pid(marker: Path) -> int | None:
    """The process that exited, if one did."""
    return int(marker.read_text()) if marker.exists() else None
