"""`edgekit profile`: latency, memory and agreement of a bundle measured on real boards over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekit.cli._output import emit_json

NAME = "profile"
HELP = """Run a bundle on one or more boards over SSH and bring back their measurements.

The bundle is copied to a temporary folder on each board, hash-checked there, run by its own
runner (latency p50/p90/p99, throughput, peak memory, agreement with the host's outputs on the
shipped samples), and the folder is removed. Uses your ssh client and its config; host keys are
always checked. Several --board options run in parallel.

Examples:

  edgekit profile build/raspberry-pi-5 --board ssh://pi@192.168.1.20

  edgekit profile build/arm64.tar.gz --board pi5 --board pi4     # names from boards.toml
"""


def command(
    bundle: Annotated[Path, typer.Argument(help="A bundle .tar.gz, or an OUT/<target> folder (packed on the fly).")],
    board: Annotated[list[str], typer.Option(help="ssh://user@host[:port] or a name from boards.toml; repeatable.")],
    inventory: Annotated[Optional[Path], typer.Option(help="boards.toml (default ./boards.toml, then ~/.config/edgekit/).")] = None,
    ssh_config: Annotated[Optional[Path], typer.Option(help="ssh client config to use (ssh -F).")] = None,
    remote_python: Annotated[Optional[str], typer.Option(help="Python with onnxruntime on ssh:// boards (default python3).")] = None,
    runs: Annotated[int, typer.Option(help="Timed runs on the board.")] = 200,
    timeout: Annotated[float, typer.Option(help="Seconds the whole job may take per board.")] = 600,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the result JSON files (default: beside the bundle).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result(s) as JSON.")] = False,
) -> None:
    from edgekit.api import board_failure, profile

    results, errors = profile(bundle, board, inventory, ssh_config, remote_python, runs, timeout, out)
    if as_json:
        emit_json(results[0] if len(board) == 1 and results else results)
    else:
        for r in results:
            lat, agree = r["latency_ms"], r["agreement"]
            typer.echo(f"{r['target']} on {r['board']} ({r['machine']}): p50 {lat['p50']:.3f} ms, p90 "
                       f"{lat['p90']:.3f}, p99 {lat['p99']:.3f}; agreement with host {agree['top1_agreement']}, "
                       f"max |diff| {agree['max_abs_diff']:.3g}. Saved {r['saved']}")
    if errors:
        for message in errors[:-1]:
            typer.echo(f"error: {message}", err=True)
        raise board_failure(errors[-1])
