"""One console on stderr for log lines, the stage in progress and progress bars with an ETA.

`--json` and `--quiet` silence it (the summary and the JSON go to stdout); log lines name the file and
line they come from only under `--debug`. One live area at a time: while a stage runs, the bars of its
epochs, calibration passes or searches are added to that stage's area instead of opening another.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def _debug() -> bool:
    return os.environ.get("EDGEKIT_DEBUG", "") not in ("", "0")


class _SharedConsole:
    """The console every module imports once; `configure` rebuilds what it wraps (file:line under --debug)."""

    def __init__(self) -> None:
        self._inner = Console(stderr=True, log_path=_debug())

    def configure(self, debug: bool | None = None, quiet: bool | None = None) -> None:
        keep_quiet = self._inner.quiet if quiet is None else quiet
        self._inner = Console(stderr=True, log_path=_debug() if debug is None else debug, quiet=keep_quiet)

    @property
    def rich(self) -> Console:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


console = _SharedConsole()
_live: Progress | None = None


def set_quiet(quiet: bool) -> None:
    console.configure(quiet=quiet)


def _new_progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console.rich,
                    transient=True)


@contextmanager
def stage(description: str) -> Iterator[None]:
    """The live area of one stage (or one long job): a spinner with the elapsed time."""
    global _live
    if console.quiet or _live is not None:
        yield
        return
    with _new_progress() as live:
        _live = live
        live.add_task(description, total=None)
        try:
            yield
        finally:
            _live = None


@contextmanager
def bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A bar of `total` steps with an ETA; yields `advance(n=1)`."""
    if console.quiet:
        yield lambda n=1: None
        return
    if _live is not None:
        live = _live
        task = live.add_task(description, total=total)
        try:
            yield lambda n=1: live.advance(task, n)
        finally:
            live.remove_task(task)
        return
    with _new_progress() as own:
        task = own.add_task(description, total=total)
        yield lambda n=1: own.advance(task, n)
