"""One rich console for logs and progress; quiet when --json asks for clean stdout."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


def set_quiet(quiet: bool) -> None:
    console.quiet = quiet
