"""`edgekit demo`: the whole job on the built-in MNIST example, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekit.cli._output import emit_json, start, summary_table

NAME = "demo"
HELP = """Run the full pipeline on the built-in example (real MNIST digits, no downloads).

Trains a teacher CNN and distills a 4x smaller student on first use (cached in
~/.cache/edgekit), then prunes 50%, runs QAD and compiles INT8 for this machine's target
(x86-64 or arm64), so the timings it prints are of the INT8 form this CPU runs best.
"""


def command(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("edgekit-demo"),
    target: Annotated[Optional[str], typer.Option(help="Target to compile for (default: this machine's).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
) -> None:
    from edgekit.api import demo

    start(as_json)
    report = demo(out, target, force)
    if as_json:
        emit_json(report)
        return
    summary_table(report, f"edgekit demo → {out / report['target']}")
    r = report["ratios"]
    typer.echo(f"INT8 student: {r['size']:.3f}x the FP32 size, {r['speedup_p50']:.2f}x faster (p50), "
               f"accuracy drop {r['accuracy_drop']:.2f} points. Report: {out / report['target'] / 'report.md'}")
