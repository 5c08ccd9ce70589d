"""`edgekit boards check`: is each board reachable, what is it, what can it run, how much disk is free."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgekit.api import BOARDS_CHECK_OPTIONS
from edgekit.cli._options import given, with_settings

app = typer.Typer(help="Boards from boards.toml (or ssh:// addresses).", no_args_is_help=True)


@app.command("check")
@with_settings(BOARDS_CHECK_OPTIONS)
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    **settings: Any,
) -> None:
    """Reachability, architecture, Python/onnxruntime/TensorRT versions and free disk of each board.

    Exits 1 when any board is unreachable, so scripts can wait on it."""
    from edgekit.api import check_boards
    from edgekit.cli._output import emit_json

    rows = check_boards(**given(settings, BOARDS_CHECK_OPTIONS))
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
