"""`edgekit compress`: prune, quantize (QAD/static/dynamic), compile and measure for one target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgekit.api import COMPRESS_OPTIONS
from edgekit.cli._options import given, with_settings
from edgekit.cli._output import emit_json, start, summary_table

NAME = "compress"
HELP = """Compress a student for a target board and measure it.

Examples:

  edgekit compress --model ./student_dir --data ./calib.npz --target arm64 --prune 0.5 --quant qad --out build/

  edgekit compress --model mypkg.models:build --weights w.safetensors --data imgs/ --target x86-64 --quant static --out build/

  edgekit compress --model model.onnx --data calib.npz --quant static --out build/
"""


@with_settings(COMPRESS_OPTIONS, enforce_required=False)
def command(
    recipe: Annotated[Optional[Path], typer.Option(help="YAML file with any of these settings; options override it.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Reuse finished stages in OUT/work.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
    **settings: Any,
) -> None:
    from edgekit.api import compress, load_recipe

    start(as_json)
    options = load_recipe(recipe) if recipe else {}
    options.update(given(settings, COMPRESS_OPTIONS))
    report = compress(**options, force=force, resume=resume)
    if "rank" in report:
        return  # a torchrun process other than 0: process 0 reports
    if as_json:
        emit_json(report)
    elif report.get("format") == "causal-lm":
        from edgekit.api import language_model_report

        print(language_model_report(report))
    else:
        summary_table(report, f"edgekit compress → {Path(options['out']) / report['target']}")
