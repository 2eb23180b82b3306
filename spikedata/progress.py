"""One progress-bar style for every long-running `spikedata` and `hm2bp` command (rich)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _Silent:
    """Same interface as rich's Progress, does nothing (for `progress=False`)."""

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        pass

    def update(self, *args, **kwargs) -> None:
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool = True, *extra_columns) -> Iterator[Progress | _Silent]:
    """A rich progress bar on stderr showing count, rate-free ETA and any extra columns (e.g. loss); a Ctrl-C
    inside marks the unfinished tasks "(interrupted)" before the bar stops."""
    if not enabled:
        yield _Silent()
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
    ]
    from rich.console import Console

    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as bar:
        try:
            yield bar
        except KeyboardInterrupt:  # the bar's last frame says so, instead of looking frozen
            for task in bar.tasks:
                if not task.finished:
                    bar.update(task.id, description=f"{task.description} (interrupted)")
            raise
