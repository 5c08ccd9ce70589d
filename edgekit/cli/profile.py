"""`edgekit profile`: latency, memory and agreement of a bundle measured on a real board over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._output import emit_json

NAME = "profile"
HELP = """Run a bundle on a board over SSH and bring back its measurements.

The bundle is copied to a temporary folder on the board, hash-checked there, run by its own
runner (latency p50/p90/p99, throughput, peak memory, agreement with the host's outputs on the
shipped samples), and the folder is removed. Uses your ssh client and its config; host keys are
always checked.

Example:

  edgekit profile build/raspberry-pi-5 --board ssh://pi@192.168.1.20
"""


def command(
    bundle: Annotated[Path, typer.Argument(help="A bundle .tar.gz, or an OUT/<target> folder (packed on the fly).")],
    board: Annotated[str, typer.Option(help="The board: ssh://user@host[:port].")],
    ssh_config: Annotated[Optional[Path], typer.Option(help="ssh client config to use (ssh -F).")] = None,
    remote_python: Annotated[str, typer.Option(help="Python on the board that has onnxruntime (a venv's python, say).")] = "python3",
    runs: Annotated[int, typer.Option(help="Timed runs on the board.")] = 200,
    timeout: Annotated[float, typer.Option(help="Seconds the whole job may take.")] = 600,
    out: Annotated[Optional[Path], typer.Option(help="Where to save the result JSON.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from dataclasses import replace

    from ..errors import InputError
    from ..fsutil import write_json
    from ..remote.profile import parse_board, profile

    if not bundle.exists():
        raise InputError(f"{bundle} does not exist; pass a bundle from `edgekit pack` or an OUT/<target> folder")
    target_board = replace(parse_board(board), python=remote_python)
    result = profile(bundle, target_board, ssh_config, runs, timeout)
    out = out or bundle.parent / f"{result['target']}-on-{target_board.name.replace(':', '-')}.json"
    write_json(out, result)
    if as_json:
        emit_json(result)
        return
    lat, agree = result["latency_ms"], result["agreement"]
    typer.echo(f"{result['target']} on {result['board']} ({result['machine']}): p50 {lat['p50']:.3f} ms, "
               f"p90 {lat['p90']:.3f}, p99 {lat['p99']:.3f}; agreement with host {agree['top1_agreement']}, "
               f"max |diff| {agree['max_abs_diff']:.3g}. Saved {out}")
