"""`edgekit distill`: make a student from a teacher (response distillation), resumable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

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


def command(
    teacher: Annotated[str, typer.Option(help="Teacher: transformers folder, package.module:factory or example:NAME.")],
    student: Annotated[str, typer.Option(help="Student: transformers folder or package.module:factory (built fresh).")],
    data: Annotated[str, typer.Option(help="Training data (.npz, folder, image folder, or example:mnist).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    teacher_weights: Annotated[Optional[str], typer.Option(help="Teacher weights file.")] = None,
    student_weights: Annotated[Optional[str], typer.Option(help="Start the student from these weights.")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    lr: Annotated[float, typer.Option(help="Learning rate (cosine-annealed).")] = 1e-3,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = 4.0,
    alpha: Annotated[float, typer.Option(help="Task-loss weight (1 - alpha goes to KD).")] = 0.5,
    alpha_end: Annotated[Optional[float], typer.Option(help="Ramp alpha linearly to this by the last epoch.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size (global: split over torchrun processes).")] = 64,
    accumulate: Annotated[int, typer.Option(help="Sum the gradients of this many batches per optimizer step.")] = 1,
    feature_kd: Annotated[Optional[list[str]], typer.Option(help="Feature distillation pair STUDENT_LAYER[:TEACHER_LAYER] (repeatable); a learned projection bridges widths.")] = None,
    feature_weight: Annotated[float, typer.Option(help="Weight of the feature loss.")] = 1.0,
    attention_kd: Annotated[float, typer.Option(help="Weight of attention-map transfer between transformer pairs (0: off).")] = 0.0,
    curriculum: Annotated[Optional[float], typer.Option(help="Start on this fraction of samples the teacher is surest of; all by the last epoch.")] = None,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 autocast for the forward passes.")] = "fp32",
    device: Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu or cuda.")] = "auto",
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without better agreement (0: never).")] = 0,
    split: Annotated[str, typer.Option(help="train,calib,eval fractions.")] = "0.7,0.1,0.2",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a stopped run in OUT.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json.")] = False,
) -> None:
    from edgekit.api import distill

    start(as_json)
    report = distill(teacher=teacher, student=student, data=data, out=out, teacher_weights=teacher_weights,
                     student_weights=student_weights, epochs=epochs, lr=lr, temperature=temperature, alpha=alpha,
                     alpha_end=alpha_end, batch_size=batch_size, accumulate=accumulate, feature_kd=feature_kd,
                     feature_weight=feature_weight, attention_kd=attention_kd, curriculum=curriculum,
                     precision=precision, device=device, patience=patience, split=split, seed=seed,
                     force=force, resume=resume)
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
