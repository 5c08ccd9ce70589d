"""Orchestration of `compress`: validate everything first, then run stages, then publish OUT/<target>."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.distill import distributed
from edgekit.artifact import Artifact
from edgekit.data import make_splits
from edgekit.data.samples import check_label_range
from edgekit.data.text import copy_tokenizer
from edgekit.data.splits import parse_fractions
from edgekit.errors import BudgetExceededError, DataError, InputError
from edgekit.files import atomic_dir
from edgekit.bundle.manifest import write_manifest
from edgekit.outdir import claimed_output, input_paths
from edgekit.models import load_model
from edgekit.pipeline import Context, check_stages, run_stages
from edgekit.progress import console
from edgekit.settings import CompressConfig, load_layer_ratios
from edgekit.measure.reference import REFERENCE, write_reference
from edgekit.bundle.report import build_report, write_report
from edgekit.measure.fidelity import check_teacher_fits, drop_unit, fidelity_drop
from edgekit.target import Target, load_target
from edgekit.files import scratch_dir


def run_compress(cfg: CompressConfig) -> dict[str, Any]:
    """Under torchrun the processes share the training stages (QAD, pruning fine-tuning) by DDP on CPU with
    gloo; process 0 runs the rest and writes OUT, the others stop after the last training stage."""
    runtime = distributed.start("cpu") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else distributed.current()
    try:
        if runtime.world > 1 and cfg.resume:
            raise InputError("--resume runs in one process; start it without torchrun")
        return _run(cfg, runtime)
    finally:
        distributed.stop()


def _run(cfg: CompressConfig, runtime: distributed.Runtime) -> dict[str, Any]:
    from edgekit.models.causal_lm import is_causal_lm

    target = load_target(cfg.target)
    if is_causal_lm(cfg.model):
        from edgekit.runs.compress_llm import run_llm_compress

        return run_llm_compress(cfg, target)
    student = load_model(cfg.model, cfg.weights)
    if student.is_onnx and cfg.quant_by_default:
        console.log(f"--quant {cfg.quant.value}: the default for an ONNX model (QAD and pruning need a PyTorch one)")
    splits = _splits(cfg, student)
    reference = check_model_fits(student, splits)
    teacher = _teacher(cfg, student, splits)
    stages = build_stages(cfg, target, student.is_onnx)
    ctx = Context(target=target, splits=splits, seed=cfg.seed, work=cfg.out / "work", teacher=teacher,
                  student=None if student.is_onnx else student.module)
    if student.is_onnx:
        ctx.cache["reference_eval"] = reference
    artifact = _initial_artifact(student)
    check_stages(stages, ctx, artifact)
    if not runtime.main:
        return _follow(stages, ctx, artifact, runtime.rank)
    with claimed_output(cfg.out, cfg.force, cfg.resume, input_paths(cfg.flat())):
        ctx.work.mkdir(parents=True, exist_ok=True)
        final = run_stages(stages, ctx, artifact, ctx.work, resume=cfg.resume)
        check_budget(cfg, final, ctx.work)
        note_no_speedup(target, final)
        return publish(cfg, target, final, ctx, student)


def _follow(stages: list, ctx: Context, artifact: Artifact, rank: int) -> dict[str, Any]:
    """A torchrun process other than 0: the same stages up to the last one that trains, in a scratch folder,
    so every DDP step has its partner; nothing is written to OUT."""
    from edgekit.stages.prune import PruneStage
    from edgekit.stages.qad import QadStage

    last = max((i for i, s in enumerate(stages) if isinstance(s, (PruneStage, QadStage))), default=-1)
    with scratch_dir("rank") as scratch:
        ctx.work = Path(scratch)
        run_stages(stages[:last + 1], ctx, artifact, Path(scratch))
    return {"rank": rank}


def note_no_speedup(target, final: Artifact) -> None:
    """Say so when the compressed model is not faster than FP32 on this host and the host is the target: on a
    published document-orientation CNN every INT8 form, edgekit's and the peers', ran at 0.84-0.95x FP32 over
    two benchmark runs."""
    import platform

    bench = next((h for h in final.history if h.name == "bench"), None)
    if bench is None or target.arch != platform.machine():
        return
    fp32, last = bench.metrics.get("fp32_p50_ms"), bench.metrics.get("final_p50_ms")
    if fp32 and last and last > fp32:
        console.log(f"the compressed model runs at {fp32 / last:.2f}x the FP32 model's speed on this host "
                    f"({last:.3g} vs {fp32:.3g} ms): it is smaller, not faster here; --quant none keeps FP32")


def check_budget(cfg: CompressConfig, final: Artifact, work: Path) -> None:
    """With --max-accuracy-drop, refuse to publish a final model that lost more than the budget."""
    import json

    if cfg.max_accuracy_drop is None:
        return
    bench = next(h for h in final.history if h.name == "bench")
    measured = json.loads((work / bench.folder / "measurements.json").read_text())
    fp32, last = measured["fp32"], measured["final"]
    drop = fidelity_drop(fp32, last)
    unit = drop_unit(fp32)
    if drop > cfg.max_accuracy_drop:
        raise BudgetExceededError(
            f"the final model lost {drop:.2f} {unit} (budget {cfg.max_accuracy_drop}), so nothing was published; "
            "try --quant qad, more --epochs or a larger budget (finished stages stay in OUT/work for --resume)")


def _splits(cfg: CompressConfig, student):
    data = student.data(cfg.data)
    length = (data.preprocess or {}).get("max_length")  # text: evaluation sentences padded alike
    eval_data = student.data(cfg.eval_data, length) if cfg.eval_data else None
    return make_splits(data, parse_fractions(cfg.split), cfg.seed, eval_data, announce_cap=not cfg.split_by_default)


def check_model_fits(model, splits) -> np.ndarray | None:
    """Run one sample through the model: shape and label errors surface before any output is written."""
    from edgekit.backends import ort as ort_backend

    inputs, _ = next(splits.calib.batches(1))
    try:
        if model.is_onnx:
            out = ort_backend.session(model.onnx_path).run(None, {n: inputs[n] for n in model.input_names})[0]
        else:
            import torch

            with torch.no_grad():
                out = model.module(*(torch.from_numpy(inputs[n]) for n in model.input_names)).numpy()
    except Exception as exc:  # torch and ORT raise many types for shape mismatches
        shapes = {n: list(inputs[n].shape) for n in model.input_names}
        raise DataError(f"data {splits.calib.source} (sample shapes {shapes}) does not fit the model: "
                        f"{' '.join(str(exc).split())[:160]}; give data shaped like the model input") from exc
    classes = out.shape[-1]
    for part in (splits.train, splits.calib, splits.eval):
        check_label_range(part.labels, classes, part.source)
    if model.is_onnx:
        return ort_backend.run_model(model.onnx_path, splits.eval, model.input_names)
    return None


def _teacher(cfg: CompressConfig, student, splits):
    """The given teacher, else the unpruned FP32 student itself (self-distillation)."""
    if student.is_onnx:
        return None
    if cfg.teacher is None:
        return student.module
    teacher = load_model(cfg.teacher, cfg.teacher_weights)
    if teacher.is_onnx:
        raise InputError("--teacher must be a PyTorch model (example:, package.module:factory or a transformers folder)")
    check_teacher_fits(teacher.module, student.module, splits, student.input_names)
    return teacher.module


def _initial_artifact(student) -> Artifact:
    files = {"onnx": str(Path(student.onnx_path).resolve())} if student.is_onnx else {}
    return Artifact(format="onnx" if student.is_onnx else "torch", folder=".", files=files,
                    source_spec=student.spec, input_names=student.input_names,
                    source_weights=str(Path(student.weights).resolve()) if student.weights else None)


def _scheme(cfg: CompressConfig, target: Target):
    """The target's Q/DQ scheme with its activation type as --activations decides (measured where it can be)."""
    if not cfg.quant.calibrates:
        return target.scheme, None
    from edgekit.ptq.activation_type import activation_scheme

    return activation_scheme(target, cfg.calibration.activations)


def build_stages(cfg: CompressConfig, target: Target, is_onnx: bool) -> list:
    """The stages --quant and the pruning settings call for, each given its typed settings and the target's."""
    from edgekit.stages.bench import BenchStage
    from edgekit.stages.calibrate import CalibrateStage
    from edgekit.stages.compile import CompileStage
    from edgekit.stages.export import ExportStage
    from edgekit.stages.prune import PruneStage
    from edgekit.stages.qad import QadStage
    from edgekit.stages.source import SourceStage

    prunes = _prunes(cfg, is_onnx)
    stages: list = [SourceStage(opset=target.opset)]
    if prunes:
        ratios = load_layer_ratios(cfg.pruning.layer_ratios)
        stages.append(PruneStage(cfg.pruning.model_copy(update={"round_to": target.round_to,
                                                                "layer_ratios": ratios})))
    method = cfg.calibration.method
    scheme, activations = _scheme(cfg, target)
    if cfg.quant.calibrates:
        calibration = cfg.calibration.model_copy(update={"equalize": "off"}) if cfg.quant.trains else cfg.calibration
        stages.append(CalibrateStage(calibration, scheme, cfg.fidelity, opset=target.opset))
    if cfg.quant.trains:
        stages.append(QadStage(cfg.qad, method, scheme, recover=prunes, opset=target.opset))
    stages.append(ExportStage(cfg.quant, method, scheme, opset=target.opset, max_drop=cfg.max_accuracy_drop,
                              fidelity=cfg.fidelity, bias_correction=cfg.calibration.bias_correction,
                              rounding=cfg.calibration.rounding, activations=activations))
    if target.runtime == "tensorrt":
        from edgekit.stages.compile_trt import TensorRTCompileStage

        stages.append(TensorRTCompileStage(target))
    else:
        stages.append(CompileStage(ort_format=target.ort_format, platform=target.ort_platform))
    stages.append(BenchStage(target.bench))
    return stages


def _prunes(cfg: CompressConfig, is_onnx: bool) -> bool:
    """Explicit ratios prune; a budget alone searches a pruning too, for PyTorch students."""
    return (cfg.pruning.ratio > 0 or bool(cfg.pruning.layer_ratios)
            or (cfg.max_accuracy_drop is not None and not is_onnx))


def publish(cfg: CompressConfig, target, final: Artifact, ctx: Context, student) -> dict[str, Any]:
    """Assemble OUT/<target>/ atomically from the compile and bench stages."""
    import json

    folders = {h.name: ctx.work / h.folder for h in final.history}
    measurements = json.loads((folders["bench"] / "measurements.json").read_text())
    report = build_report(final, measurements, target.name)
    compiled = Artifact.load(folders["compile"])
    with atomic_dir(cfg.out / target.name, replace=True) as tmp:
        for role, name in compiled.files.items():
            shutil.copy(folders["compile"] / name, tmp / name)  # keeps build_engine.sh executable
        # the file the board runs: the ORT-format conversion for an ARM platform fuses differently from the
        # host's session over model.onnx (logits 0.08 apart on the MNIST student), so its outputs are the reference
        shipped = tmp / "model.ort" if (tmp / "model.ort").is_file() else tmp / "model.onnx"
        write_reference(tmp / REFERENCE, shipped, ctx.splits.eval, final.input_names)
        copy_tokenizer(student.tokenizer, tmp)
        write_report(tmp, report)
        write_manifest(tmp, cfg, target, compiled, ctx, student, folders["source"] / "fp32.onnx")
    return report
