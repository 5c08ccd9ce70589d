"""`edgekit engine-report`: what the board's TensorRT build really ran, from build_engine.sh's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli._output import emit_json

NAME = "engine-report"
HELP = """Summarise a TensorRT build: latency, INT8 vs float layers, reformat layers.

Reads trtexec.log, layers.json and profile.json that build_engine.sh wrote on the board.

Example:

  scp -r nvidia@192.168.55.1:bundle/ ./board && edgekit engine-report ./board
"""


def command(
    folder: Annotated[Path, typer.Argument(help="Folder holding trtexec.log, layers.json and profile.json.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from edgekit.api import engine_report

    report = engine_report(folder)
    if as_json:
        emit_json(report)
        return
    lat, layers = report["latency"], report["layers"]
    typer.echo(f"TensorRT {report['tensorrt_version']}: median {lat['median']:.3f} ms, p99 {lat.get('p99', 0):.3f} ms, "
               f"{report['throughput_qps']} qps")
    typer.echo(f"INT8 compute layers: {len(layers['int8_compute_layers'])}; float: {layers['float_compute_layers']}; "
               f"reformat layers: {len(layers['reformat_layers'])}")
