"""One stop path for SIGINT (Ctrl-C) and SIGTERM (`docker stop`, a Kubernetes pod deletion).

The first signal stops the sweep gracefully wherever it is:

- while Tune runs trials, through Tune's own stop: its SIGUSR1 handler (installed by
  `Tuner.fit` in the main thread, ray/tune/tune.py `_setup_signal_catching`) ends the trial loop,
  saves the experiment state for `--resume` and stops the trials (each has checkpointed at its
  last epoch, training.checkpoint_every);
- anywhere else (Ray start, baseline, seeding, the report), by raising StopRequested in the
  main thread, which the launcher's run guards turn into KILLED MLflow runs.

A second signal raises StopRequested at once, also inside Tune: the run guards still end every
MLflow run. Why own handlers: `ray.init` replaces SIGTERM's handler (sys.exit), the local Ray
node replaces it again (kill Ray, exit 1), and Ray's core worker installs a native handler that
aborts with a stack dump (exit 134); Tune's SIGINT handler only covers the trial loop. So the
launcher installs these after connecting to Ray, and Tune's SIGINT handler is switched off
(TUNE_DISABLE_SIGINT_HANDLER) so that one handler sees every signal.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which. A KeyboardInterrupt, so that code which
    already cleans up after Ctrl-C cleans up after SIGTERM too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum


class StopSignals:
    """The handlers of one sweep driver; `received` is the first signal, or None."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._tune_running = False

    def install(self) -> None:
        """(Re)install the handlers: call again after anything that replaces them (ray.init).
        Only the main thread may set handlers; elsewhere (a notebook's worker thread) Python's
        defaults stay."""
        if threading.current_thread() is not threading.main_thread():
            return
        # Switched off before Tuner.fit reads it: Tune's SIGINT handler would otherwise
        # replace ours for the length of the trial loop.
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    @contextmanager
    def tune_running(self) -> Iterator[None]:
        """While Tune's trial loop runs, a first signal asks Tune to stop instead of raising."""
        self._tune_running = True
        try:
            yield
        finally:
            self._tune_running = False

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if first and self._tune_running and _tune_handles_sigusr1():
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop (see module docstring)
            return
        raise StopRequested(signum)


def _tune_handles_sigusr1() -> bool:
    # SIGUSR1's default action ends the process: send it only once Tune's loop has installed
    # its handler (a Python callable), not in the moment before.
    return hasattr(signal, "SIGUSR1") and callable(signal.getsignal(signal.SIGUSR1))
