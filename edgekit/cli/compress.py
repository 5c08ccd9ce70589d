"""`edgekit compress`: prune, quantize (QAD/static/dynamic), compile and measure for one target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekit.cli._output import emit_json, start, summary_table

NAME = "compress"
HELP = """Compress a student for a target board and measure it.

Examples:

  edgekit compress --model ./student_dir --data ./calib.npz --target arm64 --prune 0.5 --quant qad --out build/

  edgekit compress --model mypkg.models:build --weights w.safetensors --data imgs/ --target x86-64 --quant static --out build/

  edgekit compress --model model.onnx --data calib.npz --quant static --out build/
"""


def command(
    model: Annotated[Optional[str], typer.Option(help="transformers folder, package.module:factory, example:NAME, or .onnx")] = None,
    data: Annotated[Optional[str], typer.Option(help=".npz, folder of .npz, image folder with preprocess.yaml, or example:mnist")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder; OUT/<target>/ holds the artifact.")] = None,
    target: Annotated[Optional[str], typer.Option(help="Target name (see `edgekit targets`) or a board .yaml file.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Student weights (.safetensors, or .pt state dict).")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher spec; default: the unpruned FP32 student.")] = None,
    teacher_weights: Annotated[Optional[str], typer.Option(help="Teacher weights file.")] = None,
    eval_data: Annotated[Optional[str], typer.Option(help="Separate evaluation data (else a split of --data).")] = None,
    prune: Annotated[Optional[float], typer.Option(help="Fraction of channels to remove, in [0, 1).")] = None,
    protect: Annotated[Optional[list[str]], typer.Option(help="Layer never pruned (repeatable; default: stem conv and classifier).")] = None,
    importance: Annotated[Optional[str], typer.Option(help="Channel importance: l1 | l2 | bn-scale | taylor.")] = None,
    global_prune: Annotated[Optional[bool], typer.Option("--global-prune/--uniform-prune", help="Rank channels across layers, or prune each layer by the same ratio.")] = None,
    min_channels: Annotated[Optional[int], typer.Option(help="No layer keeps fewer channels than this.")] = None,
    max_layer_ratio: Annotated[Optional[float], typer.Option(help="No layer loses more than this fraction.")] = None,
    layer_ratios: Annotated[Optional[str], typer.Option(help="Per-layer ratios JSON (from `edgekit prune scan`).")] = None,
    prune_steps: Annotated[Optional[int], typer.Option(help="Prune in N steps, recalibrating BN and distilling between.")] = None,
    finetune_epochs: Annotated[Optional[int], typer.Option(help="KD epochs after each prune step / budget candidate.")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Search the fastest pruning within this many points.")] = None,
    quant: Annotated[Optional[str], typer.Option(help="qad | static | dynamic | none")] = None,
    calib: Annotated[Optional[str], typer.Option(help="minmax | percentile | entropy | mse | auto (the most faithful on the calibration split)")] = None,
    calibrator: Annotated[Optional[str], typer.Option(help="edgekit | nncf (NNCF statistics and bias correction, edgekit's Q/DQ placement).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="QAD epochs.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="QAD learning rate.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="KD temperature T (loss scaled by T²).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Weight of the task loss when labels exist.")] = None,
    alpha_end: Annotated[Optional[float], typer.Option(help="Ramp the task-loss weight linearly to this by the last epoch.")] = None,
    patience: Annotated[Optional[int], typer.Option(help="QAD: stop after N epochs without better validation agreement.")] = None,
    learn_scales: Annotated[Optional[bool], typer.Option("--learn-scales/--observed-scales", help="QAD: train activation ranges (LSQ) instead of observing them.")] = None,
    feature_kd: Annotated[Optional[list[str]], typer.Option(help="QAD feature distillation pair STUDENT_LAYER[:TEACHER_LAYER] (repeatable).")] = None,
    feature_weight: Annotated[Optional[float], typer.Option(help="Weight of the feature-KD loss.")] = None,
    attention_kd: Annotated[Optional[float], typer.Option(help="QAD attention-map transfer weight (transformers; 0: off).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Training batch size.")] = None,
    split: Annotated[Optional[str], typer.Option(help="train,calib,eval fractions of --data.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for splits and training.")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="YAML file with any of these settings; options override it.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Reuse finished stages in OUT/work.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json to stdout.")] = False,
) -> None:
    from edgekit.api import compress, load_recipe

    start(as_json)
    options = load_recipe(recipe) if recipe else {}
    given = dict(model=model, data=data, out=out, target=target, weights=weights, teacher=teacher,
                 teacher_weights=teacher_weights, eval_data=eval_data, prune=prune, protect=protect, quant=quant,
                 importance=importance, global_prune=global_prune, min_channels=min_channels,
                 max_layer_ratio=max_layer_ratio, layer_ratios=layer_ratios, prune_steps=prune_steps,
                 finetune_epochs=finetune_epochs, max_accuracy_drop=max_accuracy_drop,
                 calib=calib, calibrator=calibrator, epochs=epochs, lr=lr, temperature=temperature, alpha=alpha, alpha_end=alpha_end, patience=patience,
                 learn_scales=learn_scales, feature_kd=feature_kd, feature_weight=feature_weight, attention_kd=attention_kd, batch_size=batch_size,
                 split=split, seed=seed)
    options.update({k: v for k, v in given.items() if v is not None})
    _require(options, ("model", "data", "out"))
    report = compress(**options, force=force, resume=resume)
    if "rank" in report:
        return  # a torchrun process other than 0: process 0 reports
    if as_json:
        emit_json(report)
    else:
        summary_table(report, f"edgekit compress → {Path(options['out']) / report['target']}")


def _require(options: dict, names: tuple[str, ...]) -> None:
    from edgekit.errors import InputError

    missing = [f"--{n.replace('_', '-')}" for n in names if options.get(n) in (None, "")]
    if missing:
        raise InputError(f"missing {', '.join(missing)}; see `edgekit compress --help` for examples")
