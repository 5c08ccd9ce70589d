"""`edgekit prune scan`: per-group pruning sensitivity, measured on the target runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekit.cli._output import emit_json, start

app = typer.Typer(help="Pruning tools: sensitivity scan.", no_args_is_help=True)


@app.command("scan")
def scan_command(
    model: Annotated[str, typer.Option(help="transformers folder, package.module:factory or example:NAME")],
    data: Annotated[str, typer.Option(help="Data with labels for accuracy (else agreement is used).")],
    out: Annotated[Path, typer.Option(help="Folder for scan.json, scan.png and layer-ratios.json.")],
    weights: Annotated[Optional[str], typer.Option(help="Weights file for a factory model.")] = None,
    target: Annotated[str, typer.Option(help="Target (its round_to is used).")] = "arm64",
    ratios: Annotated[str, typer.Option(help="Ratios to try per group.")] = "0.25,0.5,0.75",
    max_drop: Annotated[float, typer.Option(help="Accuracy-drop budget (points) for the proposal.")] = 0.5,
    eval_samples: Annotated[int, typer.Option(help="Evaluation samples per measurement.")] = 500,
    protect: Annotated[Optional[list[str]], typer.Option(help="Layer never pruned (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the evaluation split.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the proposal as JSON.")] = False,
) -> None:
    """Prune one channel group at a time over several ratios; propose per-layer ratios.

    Example:

      edgekit prune scan --model example:mnist-student --data example:mnist --out scan/

      edgekit compress ... --layer-ratios scan/layer-ratios.json
    """
    from edgekit.api import scan

    start(as_json)
    result = scan(model, data, out, weights, target, ratios, max_drop, eval_samples, protect, seed, force)
    if as_json:
        emit_json(result["proposal"])
    else:
        typer.echo(f"proposed per-layer ratios ({len(result['proposal'])} groups): {out / 'layer-ratios.json'}")
