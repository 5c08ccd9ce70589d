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

A causal language model (a transformers folder or .gguf teacher, a student config .json or folder, .txt/.jsonl
text): token-level KL in vocabulary chunks mixed with cross-entropy; --top-k K caches the teacher's top-K logits on
disk once (--cache-only writes the cache where the teacher fits; --teacher CACHE/<key> trains from it);
--lora-rank R trains adapters, merged before saving; --fsdp shards the student under torchrun.

Example:

  edgekit distill --teacher example:mnist-teacher --student edgekit.examples.models:mnist_student --data example:mnist --out distilled/

  edgekit distill --teacher example:text-teacher --student edgekit.examples.text:text_student --data example:sentiment --attention-kd 1 --out text/

  edgekit distill --teacher ./teacher --student ./student-config.json --data corpus.jsonl --out distilled/
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
    if report.get("format") == "causal-lm":
        typer.echo(_language_model_line(report))
        return
    t, s = report["teacher"], report["student"]
    fidelity = f"agreement {s['agreement']:.4f}" if s["agreement"] is not None else f"cosine {s['cosine']:.4f}"
    pct = lambda v: "n/a" if v is None else f"{v:.2f}%"  # noqa: E731
    typer.echo(f"student {pct(s['accuracy'])} vs teacher {pct(t['accuracy'])} at {report['params_ratio']:.3f}x the "
               f"parameters ({fidelity} with the teacher); saved {report.get('student_folder') or out / 'student.safetensors'}")


def _language_model_line(report: dict) -> str:
    if "student" not in report:
        return f"teacher top-{report['top_k']} cached in {report['cache']} ({sum(report['blocks'].values())} blocks)"
    s, t, s0 = report["student"], report["teacher"], report["student_at_start"]
    ratio = f" at {report['params_ratio']:.3f}x the parameters" if report.get("params_ratio") else ""
    return (f"student perplexity {s['perplexity']:.2f} (teacher {t['perplexity']:.2f}){ratio}, on held-out text: KL "
            f"to the teacher {s['kl']:.4f}, top-1 agreement {s['top1_agreement']:.4f} (before training "
            f"{s0['kl']:.4f} and {s0['top1_agreement']:.4f}); saved {report['student_folder']}")
