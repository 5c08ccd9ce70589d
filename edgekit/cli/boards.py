"""`edgekit boards check`: is each board reachable, what is it, what can it run, how much disk is free."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Boards from boards.toml (or ssh:// addresses).", no_args_is_help=True)


@app.command("check")
def check(
    board: Annotated[Optional[list[str]], typer.Option(help="Board name or ssh:// address (default: every board in the inventory).")] = None,
    inventory: Annotated[Optional[Path], typer.Option(help="boards.toml (default ./boards.toml, then ~/.config/edgekit/).")] = None,
    ssh_config: Annotated[Optional[Path], typer.Option(help="ssh client config to use (ssh -F).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Reachability, architecture, Python/onnxruntime/TensorRT versions and free disk of each board.

    Exits 1 when any board is unreachable, so scripts can wait on it."""
    from edgekit.api import check_boards
    from edgekit.cli._output import emit_json

    rows = check_boards(board, inventory, ssh_config)
    if as_json:
        emit_json(rows)
    else:
        _print_table(rows)
    if not all(r["reachable"] for r in rows):
        raise typer.Exit(1)


def _print_table(rows: list[dict]) -> None:
    table = Table(title="edgekit boards")
    for col in ("board", "reachable", "arch", "python", "onnxruntime", "tensorrt", "free MB"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["board"], "yes" if r["reachable"] else r["error"], *(str(r.get(k) or "–") for k in
                      ("arch", "python", "onnxruntime", "tensorrt", "free_mb")))
    Console().print(table)
