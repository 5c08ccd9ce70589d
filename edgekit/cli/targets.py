"""`edgekit targets`: the boards edgekit knows, and one board's full description."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="List known targets, or show one.", invoke_without_command=True, no_args_is_help=False)


@app.callback()
def list_targets(ctx: typer.Context,
                 as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """List the built-in targets."""
    if ctx.invoked_subcommand is not None:
        return
    from edgekit.api import targets as all_targets
    from edgekit.cli._output import emit_json

    targets = all_targets()
    if as_json:
        emit_json(targets)
        return
    table = Table(title="edgekit targets")
    for col in ("name", "arch", "cpu", "runtime", "quant preset", "round_to", "TensorRT (JetPack)"):
        table.add_column(col)
    for t in targets:
        trt = f"{t['tensorrt']['version']} ({t['tensorrt']['jetpack']})" if t.get("tensorrt") else "–"
        table.add_row(t["name"], t["arch"], t.get("cpu") or "–", t["runtime"], t["quant_preset"], str(t["round_to"]), trt)
    Console().print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Target name or a board .yaml file.")]) -> None:
    """Print one target's settings."""
    from edgekit.api import target
    from edgekit.cli._output import emit_json

    emit_json(target(name))
