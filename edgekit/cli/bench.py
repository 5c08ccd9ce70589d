"""`edgekit bench`: host latency, size and fidelity of a compiled artifact against its FP32 baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.api import BENCH_OPTIONS
from edgekit.cli._options import given, with_settings
from edgekit.cli._output import emit_json, start, summary_table

NAME = "bench"
HELP = """Measure an artifact folder on the host with ONNX Runtime.

Example:

  edgekit bench build/arm64 --data ./eval.npz
  edgekit bench build/x86-64 --prompts prompts.txt --data held-out.txt   (a language model)
"""


@with_settings(BENCH_OPTIONS)
def command(
    folder: Annotated[Path, typer.Argument(help="An OUT/<target> folder written by `edgekit compress`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    **settings: Any,
) -> None:
    from edgekit.api import bench

    start(as_json)
    results = bench(folder, **given(settings, BENCH_OPTIONS))
    if as_json:
        emit_json(results)
    elif results.get("format") == "causal-lm":
        from edgekit.api import language_model_report

        print(language_model_report(results))
    else:
        summary_table(results, f"edgekit bench {folder}")
