"""`edgekit distill`: train a student against a teacher, with a checkpoint each epoch and resume.

OUT/checkpoints/ holds, per epoch, the student's weights (safetensors) and the training state (optimizer,
random-number state, feature projections; tensors only, read back with weights_only=True), plus the best
epoch's weights; OUT/history.json
holds every epoch's loss parts (total, kd, task), alpha and validation agreement with the teacher. With
--resume a stopped run goes on from its last checkpoint and ends where an uninterrupted run would.
OUT/student.safetensors (the best epoch) and OUT/report.json are written at the end; a transformers
student is also written as a folder, OUT/student/, with the tokenizer it was trained with.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgekit.distill import distributed
from edgekit.data import load_for, make_splits
from edgekit.data.splits import parse_fractions
from edgekit.errors import InputError
from edgekit.outdir import claimed_output, input_paths
from edgekit.files import write_json
from edgekit.measure.metrics import accuracy, count_params
from edgekit.models import load_model
from edgekit.models.loader import load_weights_into
from edgekit.progress import console
from edgekit.settings import DistillConfig
from edgekit.measure.fidelity import agreement_scorer, check_teacher_fits, score, torch_outputs
from edgekit.stages._torch import example_inputs
from edgekit.distill.checkpoints import RUN, check_same_settings, read_history, run_settings, save_weights
from edgekit.distill.loop import Resume, build_aux_losses, check_aux_losses, distill, epoch_batches

HISTORY, STUDENT, REPORT, STUDENT_FOLDER = "history.json", "student.safetensors", "report.json", "student"


def run_distill(cfg: DistillConfig) -> dict[str, Any]:
    runtime = distributed.start(cfg.device)
    try:
        return _run(cfg, runtime)
    finally:
        distributed.stop()


def _run(cfg: DistillConfig, runtime: distributed.Runtime) -> dict[str, Any]:
    from edgekit.runs.distill_llm import is_lm_distill, run_llm_distill

    if is_lm_distill(cfg):
        return run_llm_distill(cfg, runtime)
    if cfg.student is None:
        raise InputError("--student is missing: give the model to train")
    teacher = load_model(cfg.teacher, cfg.teacher_weights)
    student = load_model(cfg.student, cfg.student_weights)
    if teacher.is_onnx or student.is_onnx:
        raise InputError("distill trains PyTorch models; give --teacher and --student as PyTorch specs, not .onnx")
    data = load_for(cfg.data, student.input_names, student.tokenizer or teacher.tokenizer,
                    student.label2id or teacher.label2id)
    splits = make_splits(data, parse_fractions(cfg.split), cfg.seed)
    names = student.input_names
    check_teacher_fits(teacher.module, student.module, splits, names)
    train = cfg.train
    aux = build_aux_losses(train.feature_kd, train.feature_weight, train.attention_kd)
    check_aux_losses(aux, student.module, teacher.module, example_inputs(splits, names))
    claim = claimed_output(cfg.out, cfg.force, cfg.resume, input_paths(cfg.flat()), "distill") if runtime.main else nullcontext()
    with claim:
        if runtime.main:
            (cfg.out / "checkpoints").mkdir(parents=True, exist_ok=True)
            if not (cfg.resume and (cfg.out / HISTORY).is_file()):
                write_json(cfg.out / RUN, run_settings(cfg))
        distributed.barrier()  # the others wait for the output check, then read the same checkpoints
        return _train(cfg, runtime, teacher, student, splits, aux)


def _train(cfg: DistillConfig, runtime: distributed.Runtime, teacher, student, splits, aux) -> dict[str, Any]:
    names = student.input_names
    ckpt = cfg.out / "checkpoints"
    history, resume = _restore(cfg, student.module, ckpt)
    validate = agreement_scorer(student.module, teacher.module, splits.calib, names)
    batches, fractions = _batches(cfg, teacher.module, splits.train, names)

    def save(epoch: int, record: dict, state: dict) -> None:
        if fractions:
            record["curriculum_fraction"] = fractions(epoch)
        if runtime.main:
            _save_checkpoint(ckpt, epoch, student.module, state)
            if record["validation"] > max((r["validation"] for r in history), default=-float("inf")):
                save_weights(student.module, ckpt / "best.safetensors")  # distill keeps the first best too
        history.append(record)
        if runtime.main:
            write_json(cfg.out / HISTORY, history)
            parts = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "alpha")
            console.log(f"epoch {epoch + 1}/{cfg.train.epochs}: {parts}")

    stopped = resume is not None and 0 < cfg.train.patience <= resume.since_best
    if not stopped:
        distill(student.module, teacher.module, batches, cfg.train, validate=validate, aux_losses=aux,
                epochs=range(len(history), cfg.train.epochs), resume=resume, checkpoint=save, runtime=runtime)
    student.module.cpu()
    teacher.module.cpu()
    distributed.barrier()
    if (ckpt / "best.safetensors").is_file():
        load_weights_into(student.module, ckpt / "best.safetensors")
    report = _report(teacher.module, student.module, splits.eval, names, history)
    report["processes"] = runtime.world
    if runtime.main:
        _publish(cfg, student, teacher, report)
    return report


def _publish(cfg: DistillConfig, student, teacher, report: dict) -> None:
    save_weights(student.module.model, cfg.out / STUDENT)  # the bare model's names, as --weights loads them
    if _save_transformers_folder(student.module.model, cfg.out / STUDENT_FOLDER, student.tokenizer or teacher.tokenizer):
        report["student_folder"] = str(cfg.out / STUDENT_FOLDER)
    write_json(cfg.out / REPORT, report)


def _batches(cfg: DistillConfig, teacher, train, names: list[str]):
    """Plain shuffled epochs, or the entropy curriculum's growing pool (with its fraction per epoch)."""
    if cfg.curriculum is None:
        return epoch_batches(train, names, cfg.train.batch_size, cfg.seed), None
    from edgekit.distill.curriculum import curriculum_batches, entropy_ranking, fraction_at

    ranking = entropy_ranking(teacher, train, names, cfg.train.temperature)
    return (curriculum_batches(train, names, cfg.train.batch_size, cfg.seed, ranking, cfg.curriculum, cfg.train.epochs),
            lambda epoch: fraction_at(cfg.curriculum, epoch, cfg.train.epochs))


def _restore(cfg: DistillConfig, module: torch.nn.Module, ckpt: Path) -> tuple[list[dict], Resume | None]:
    """History, weights and training state of the last finished epoch when resuming; else a fresh start."""
    history_path = cfg.out / HISTORY
    history = read_history(history_path) if cfg.resume and history_path.is_file() else []
    if not history:
        return [], None
    check_same_settings(cfg)
    last = len(history) - 1
    load_weights_into(module, ckpt / f"epoch-{last:03d}.safetensors")
    best = int(np.argmax([r["validation"] for r in history]))  # the first best, as distill keeps it
    from safetensors.torch import load_file

    state_path = ckpt / f"epoch-{last:03d}.state.pt"
    try:
        state = torch.load(state_path, weights_only=True)
        best_state = load_file(str(ckpt / "best.safetensors"))
    except Exception as exc:  # torch and safetensors raise many types for damaged files
        raise InputError(f"checkpoint {state_path.parent} is damaged ({' '.join(str(exc).split())[:120]}); "
                         "start again with --force instead of --resume") from exc
    return history, Resume(state=state, best_score=history[best]["validation"], best_state=best_state,
                           since_best=last - best)








def _save_transformers_folder(model, folder: Path, tokenizer: Path | None) -> bool:
    """A transformers student is also saved as a folder with the tokenizer, so `compress --model OUT/student`
    takes it as it is; other students are rebuilt from their factory with OUT/student.safetensors."""
    from edgekit.data.text import copy_tokenizer
    from edgekit.files import atomic_dir

    if not hasattr(model, "save_pretrained"):
        return False
    import transformers

    transformers.utils.logging.disable_progress_bar()
    with atomic_dir(folder, replace=True) as tmp:
        model.save_pretrained(tmp)
        copy_tokenizer(tokenizer, tmp)
    return True


def _save_checkpoint(ckpt: Path, epoch: int, module: torch.nn.Module, state: dict) -> None:
    """Weights as safetensors; optimizer, random-number and projection state as tensors and plain
    values only, so resuming reads it back with weights_only=True."""
    save_weights(module, ckpt / f"epoch-{epoch:03d}.safetensors")
    tmp = ckpt / f".epoch-{epoch:03d}.state.pt.partial"
    torch.save(state, tmp)
    tmp.replace(ckpt / f"epoch-{epoch:03d}.state.pt")




def _report(teacher, student, samples, names, history) -> dict[str, Any]:
    t_out, s_out = torch_outputs(teacher, samples, names), torch_outputs(student, samples, names)
    return {"teacher": {"accuracy": accuracy(t_out, samples.labels), "params": count_params(teacher)},
            "student": {**score(s_out, samples.labels, t_out), "params": count_params(student)},
            "params_ratio": count_params(student) / count_params(teacher), "epochs_run": len(history),
            "best_epoch": int(np.argmax([r["validation"] for r in history])) if history else None,
            "eval_samples": len(samples)}
