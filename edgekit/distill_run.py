"""`edgekit distill`: train a student against a teacher, with a checkpoint each epoch and resume.

OUT/checkpoints/ holds, per epoch, the student's weights (safetensors) and the optimizer state
(tensors only, read back with weights_only=True), plus the best epoch's weights; OUT/history.json
holds every epoch's loss parts (total, kd, task), alpha and validation agreement with the teacher. With
--resume a stopped run goes on from its last checkpoint and ends where an uninterrupted run would.
OUT/student.safetensors (the best epoch) and OUT/report.json are written at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from .data import load_data, make_splits
from .data.splits import parse_fractions
from .errors import InputError
from .fsutil import write_json
from .metrics import accuracy, count_params, mean_cosine, top1_agreement
from .models import load_model
from .models.loader import load_weights_into
from .recipe import DistillConfig
from .stages.fidelity import agreement_scorer, torch_outputs
from .training import Resume, TrainConfig, distill, epoch_batches

HISTORY, STUDENT, REPORT = "history.json", "student.safetensors", "report.json"


def run_distill(cfg: DistillConfig) -> dict[str, Any]:
    from .api import check_out_dir

    teacher = load_model(cfg.teacher, cfg.teacher_weights)
    student = load_model(cfg.student, cfg.student_weights)
    if teacher.is_onnx or student.is_onnx:
        raise InputError("distill trains PyTorch models; give --teacher and --student as PyTorch specs, not .onnx")
    splits = make_splits(load_data(cfg.data).bind(student.input_names), parse_fractions(cfg.split), cfg.seed)
    check_out_dir(cfg.out, cfg.force, cfg.resume)
    ckpt = cfg.out / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    history, resume = _restore(cfg, student.module, ckpt)
    train_cfg = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, temperature=cfg.temperature, alpha=cfg.alpha,
                            batch_size=cfg.batch_size, seed=cfg.seed, alpha_end=cfg.alpha_end, patience=cfg.patience)
    names = student.input_names
    validate = agreement_scorer(student.module, teacher.module, splits.calib, names)

    def save(epoch: int, record: dict, opt) -> None:
        _save_checkpoint(ckpt, epoch, student.module, opt)
        if record["validation"] > max((r["validation"] for r in history), default=-float("inf")):  # distill's rule
            _save_weights(student.module, ckpt / "best.safetensors")
        history.append(record)
        write_json(cfg.out / HISTORY, history)

    stopped = resume is not None and 0 < cfg.patience <= resume.since_best
    if not stopped:
        distill(student.module, teacher.module, epoch_batches(splits.train, names, cfg.batch_size, cfg.seed),
                train_cfg, validate=validate, epochs=range(len(history), cfg.epochs),
                resume=resume, checkpoint=save)
    if (ckpt / "best.safetensors").is_file():
        load_weights_into(student.module, ckpt / "best.safetensors")
    _save_weights(student.module, cfg.out / STUDENT)
    report = _report(teacher.module, student.module, splits.eval, names, history)
    write_json(cfg.out / REPORT, report)
    return report


def _restore(cfg: DistillConfig, module: torch.nn.Module, ckpt: Path) -> tuple[list[dict], Resume | None]:
    """History, weights and optimizer state of the last finished epoch when resuming; else a fresh start."""
    history_path = cfg.out / HISTORY
    history = json.loads(history_path.read_text()) if cfg.resume and history_path.is_file() else []
    if not history:
        return [], None
    last = len(history) - 1
    load_weights_into(module, ckpt / f"epoch-{last:03d}.safetensors")
    best = int(np.argmax([r["validation"] for r in history]))  # the first best, as distill keeps it
    from safetensors.torch import load_file

    return history, Resume(optimizer=torch.load(ckpt / f"epoch-{last:03d}.optim.pt", weights_only=True),
                           best_score=history[best]["validation"],
                           best_state=load_file(str(ckpt / "best.safetensors")), since_best=last - best)


def _save_checkpoint(ckpt: Path, epoch: int, module: torch.nn.Module, opt) -> None:
    _save_weights(module, ckpt / f"epoch-{epoch:03d}.safetensors")
    tmp = ckpt / f".epoch-{epoch:03d}.optim.pt.partial"
    torch.save(opt.state_dict(), tmp)
    tmp.replace(ckpt / f"epoch-{epoch:03d}.optim.pt")


def _save_weights(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.partial")
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    tmp.replace(path)


def _report(teacher, student, samples, names, history) -> dict[str, Any]:
    t_out, s_out = torch_outputs(teacher, samples, names), torch_outputs(student, samples, names)
    return {"teacher": {"accuracy": accuracy(t_out, samples.labels), "params": count_params(teacher)},
            "student": {"accuracy": accuracy(s_out, samples.labels), "params": count_params(student),
                        "agreement": top1_agreement(s_out, t_out), "cosine": mean_cosine(s_out, t_out)},
            "params_ratio": count_params(student) / count_params(teacher), "epochs_run": len(history),
            "best_epoch": int(np.argmax([r["validation"] for r in history])) if history else None,
            "eval_samples": len(samples)}
