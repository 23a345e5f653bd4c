"""One stop path for SIGINT (Ctrl-C) and SIGTERM (`docker stop`, a Kubernetes pod deletion), for
every command that records runs (`launch`, `seed`).

The first signal stops the work gracefully wherever it is:

- while Tune runs trials, through Tune's own stop: its SIGUSR1 handler (installed by
  `Tuner.fit` in the main thread, ray/tune/tune.py `_setup_signal_catching`) ends the trial loop,
  saves the experiment state for `--resume` and stops the trials (each has checkpointed at its
  last epoch, training.checkpoint_every);
- while Ray starts or shuts down (`deferred`), after that step: interrupting `ray.init` or
  `ray.shutdown` half-way leaves Ray's processes behind;
- anywhere else (baseline, seeding, the report), by raising StopRequested in the main thread,
  which the run guards turn into KILLED MLflow runs.

A second signal raises StopRequested at once, also inside Tune or a deferred step: the run
guards still end every MLflow run. Why own handlers: `ray.init` replaces SIGTERM's handler
(sys.exit), the local Ray node replaces it again (kill Ray, exit 1), and Ray's core worker
installs a native handler that aborts with a stack dump (exit 134); Tune's SIGINT handler only
covers the trial loop. So the launcher keeps these through `ray.init` and installs them again
after it, and Tune's SIGINT handler is switched off (TUNE_DISABLE_SIGINT_HANDLER) so that one
handler sees every signal.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

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


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """The handlers of one driver process; `received` is the first signal, or None."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._arrived = 0  # signals so far
        self._latest: int | None = None
        self._tune_running = False
        self._deferring: str | None = None  # None, "first" or "every"
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """(Re)install the handlers: call again after anything that replaces them (ray.init).
        Only the main thread may set handlers; elsewhere (a notebook's worker thread) Python's
        defaults stay."""
        if not _in_main_thread():
            return
        # Switched off before Tuner.fit reads it: Tune's SIGINT handler would otherwise
        # replace ours for the length of the trial loop.
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._handle)
            if previous != self._handle:  # bound methods: equal, never identical
                self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        """Put back the handlers that were there before the first `install`."""
        if not _in_main_thread():
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    @contextmanager
    def tune_running(self) -> Iterator[None]:
        """While Tune's trial loop runs, a first signal asks Tune to stop instead of raising."""
        self._tune_running = True
        try:
            yield
        finally:
            self._tune_running = False

    @contextmanager
    def deferred(self, every_signal: bool = False) -> Iterator[None]:
        """A signal that arrives during the block is kept and raised as StopRequested when the
        block ends: for steps that must not stop half-way (starting or shutting down Ray). A
        second signal still stops at once, unless `every_signal` (a shutdown, which is short
        and the last thing left to do)."""
        arrived_before = self._arrived
        self._deferring = "every" if every_signal else "first"
        try:
            yield
        finally:
            self._deferring = None
        if self._arrived > arrived_before and self._latest is not None:
            raise StopRequested(self._latest)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signum
        self._arrived += 1
        self._latest = signum
        if self._deferring == "every" or (first and self._deferring == "first"):
            return
        if first and self._tune_running and _tune_handles_sigusr1():
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's graceful stop (see module docstring)
            return
        raise StopRequested(signum)


@contextmanager
def stop_signals_raised() -> Iterator[StopSignals]:
    """SIGINT and SIGTERM raise StopRequested in the main thread for the block (SIGTERM's
    default would end the process without cleanup, leaving MLflow runs RUNNING); the previous
    handlers come back after it."""
    signals = StopSignals()
    signals.install()
    try:
        yield signals
    finally:
        signals.restore()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _tune_handles_sigusr1() -> bool:
    # SIGUSR1's default action ends the process: send it only once Tune's loop has installed
    # its handler (a Python callable), not in the moment before.
    return hasattr(signal, "SIGUSR1") and callable(signal.getsignal(signal.SIGUSR1))
