"""The one progress bar of the project's commands (rich), so every long job looks and reads the same.

    from spin.progress import progress_bar

    with progress_bar("fitting", total=n, console=console) as bar:
        for ...:
            bar.update(completed=done, info=f"{rate:.1f} fits/s")

Columns: description, bar, done/total, a free `info` text, elapsed and remaining time. `total`
None shows a pulsing bar until `update(total=...)`. On a terminal it redraws in place; in a log
file (no TTY) rich prints the final state once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressBar:
    """One task of a rich `Progress`; `update` changes any of completed, total, description, info."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def update(self, completed: float | None = None, total: float | None = None,
               description: str | None = None, info: str | None = None) -> None:
        fields = {} if info is None else {"info": info}
        self._progress.update(self._task, completed=completed, total=total, description=description,
                              **fields)

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._task, amount)


@contextmanager
def progress_bar(description: str, total: float | None = None, console: Console | None = None,
                 transient: bool = False) -> Iterator[ProgressBar]:
    """A progress bar for the `with` block; see the module docstring."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=transient) as progress:
        yield ProgressBar(progress, progress.add_task(description, total=total, info=""))


def report_console() -> Console:
    """A console for the commands' tables: the terminal's width, or 160 columns when the output goes
    to a file or a pipe (rich would use 80 there and squeeze wide tables such as the rounds table)."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=160)
