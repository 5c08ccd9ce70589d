"""`edgekit bench`: host latency, size and fidelity of a compiled artifact against its FP32 baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekit.cli._output import emit_json, start, summary_table

NAME = "bench"
HELP = """Measure an artifact folder on the host with ONNX Runtime.

Example:

  edgekit bench build/arm64 --data ./eval.npz
"""


def command(
    folder: Annotated[Path, typer.Argument(help="An OUT/<target> folder written by `edgekit compress`.")],
    data: Annotated[str, typer.Option(help="Evaluation data (.npz, folder, or example:mnist).")],
    baseline: Annotated[Optional[str], typer.Option(help="FP32 ONNX to compare with (default: the one compress kept).")] = None,
    runs: Annotated[Optional[int], typer.Option(help="Timed runs (default: the target's setting).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    from edgekit.api import bench

    start(as_json)
    results = bench(folder, data, baseline, runs)
    if as_json:
        emit_json(results)
    else:
        summary_table(results, f"edgekit bench {folder}")
