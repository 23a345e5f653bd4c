"""The live view of a running sweep, for people (part of the CLI: it prints).

On a terminal, one status line redrawn in place under the sweep's messages; when the output is
a file or a pipe (CI, `ray job` logs), a plain line whenever the counts or the best result
change, never the elapsed time alone, so a log holds tens of lines, not thousands.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:  # importing the Tune side (Ray) is for the sweep itself, not for the CLI
    from sweep.tuning.progress import SweepProgress


class LiveView:
    """A context manager: `message` prints a line above the status, `show` updates it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.last_line_key: tuple | None = None
        self.last_line: str | None = None

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=True)
            self.live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.last_line is not None and self.console.is_terminal:
            self.console.print(self.last_line)  # the final state stays on screen

    def message(self, text: str) -> None:
        self.console.print(text)

    def show(self, progress: SweepProgress) -> None:
        line = progress.line()
        self.last_line = line
        if self.live is not None:
            self.live.update(Text(line, style="bold"))
            return
        key = (progress.ended, progress.running, progress.failed, progress.best_val_acc)
        if key != self.last_line_key:
            self.last_line_key = key
            self.console.print(line, soft_wrap=True)
