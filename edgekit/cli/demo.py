"""`edgekit demo`: the whole job on the built-in MNIST example, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.api import DEMO_OPTIONS, DEMO_OUT
from edgekit.cli._options import given, with_settings
from edgekit.cli._output import emit_json, start, summary_table

NAME = "demo"
HELP = """Run the full pipeline on the built-in example (real MNIST digits, no downloads).

Trains a teacher CNN and distills a 4x smaller student on first use (cached in
~/.cache/edgekit), then prunes 50%, runs QAD and compiles INT8 for this machine's target
(x86-64 or arm64), so the timings it prints are of the INT8 form this CPU runs best.
"""


@with_settings(DEMO_OPTIONS)
def command(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
    **settings: Any,
) -> None:
    from edgekit.api import demo

    start(as_json)
    options = given(settings, DEMO_OPTIONS)
    report = demo(**options, force=force)
    out = Path(options.get("out") or DEMO_OUT)
    if as_json:
        emit_json(report)
        return
    summary_table(report, f"edgekit demo → {out / report['target']}")
    r = report["ratios"]
    typer.echo(f"INT8 student: {r['size']:.3f}x the FP32 size, {r['speedup_p50']:.2f}x faster (p50), "
               f"accuracy drop {r['accuracy_drop']:.2f} points. Report: {out / report['target'] / 'report.md'}")
