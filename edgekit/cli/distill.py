"""`edgekit distill`: make a student from a teacher (response distillation), resumable."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from edgekit.api import DISTILL_OPTIONS
from edgekit.cli._options import given, with_settings
from edgekit.cli._output import emit_json, start

NAME = "distill"
HELP = """Distil a student from a teacher: KL at a temperature (scaled by T²) mixed with the task loss.

Each epoch is checkpointed (safetensors); --resume continues a stopped run. The best epoch by
agreement with the teacher on the calibration split is kept as OUT/student.safetensors (and, for a
transformers student, as the folder OUT/student/ with the tokenizer). Optional: feature and
attention-map distillation, an entropy curriculum, gradient accumulation, bf16 autocast. Under
`torchrun --nproc-per-node N` the processes train one model together (DDP; gloo on CPU, NCCL on GPUs).

Example:

  edgekit distill --teacher example:mnist-teacher --student edgekit.examples.models:mnist_student --data example:mnist --out distilled/

  edgekit distill --teacher example:text-teacher --student edgekit.examples.text:text_student --data example:sentiment --attention-kd 1 --out text/
"""


@with_settings(DISTILL_OPTIONS)
def command(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a stopped run in OUT.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json.")] = False,
    **settings: Any,
) -> None:
    from edgekit.api import distill

    start(as_json)
    report = distill(**given(settings, DISTILL_OPTIONS), force=force, resume=resume)
    out = settings["out"]
    if report["processes"] > 1 and int(os.environ.get("RANK", "0")) != 0:
        return  # one process speaks for the group
    if as_json:
        emit_json(report)
        return
    t, s = report["teacher"], report["student"]
    fidelity = f"agreement {s['agreement']:.4f}" if s["agreement"] is not None else f"cosine {s['cosine']:.4f}"
    pct = lambda v: "n/a" if v is None else f"{v:.2f}%"  # noqa: E731
    typer.echo(f"student {pct(s['accuracy'])} vs teacher {pct(t['accuracy'])} at {report['params_ratio']:.3f}x the "
               f"parameters ({fidelity} with the teacher); saved {report.get('student_folder') or out / 'student.safetensors'}")
