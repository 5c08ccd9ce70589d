"""`edgekit prune scan`: per-group pruning sensitivity, measured on the target runtime."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from edgekit.api import SCAN_OPTIONS
from edgekit.cli._options import given, with_settings
from edgekit.cli._output import emit_json, start

app = typer.Typer(help="Pruning tools: sensitivity scan.", no_args_is_help=True)


@app.command("scan")
@with_settings(SCAN_OPTIONS)
def scan_command(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the proposal as JSON.")] = False,
    **settings: Any,
) -> None:
    """Prune one channel group at a time over several ratios; propose per-layer ratios.

    Example:

      edgekit prune scan --model example:mnist-student --data example:mnist --out scan/

      edgekit compress ... --layer-ratios scan/layer-ratios.json
    """
    from edgekit.api import scan

    start(as_json)
    result = scan(**given(settings, SCAN_OPTIONS), force=force)
    if as_json:
        emit_json(result["proposal"])
    else:
        typer.echo(f"proposed per-layer ratios ({len(result['proposal'])} groups): {settings['out'] / 'layer-ratios.json'}")
