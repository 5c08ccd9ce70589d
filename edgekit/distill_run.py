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
from pydantic import BaseModel, ConfigDict, Field

from .data import load_data, make_splits
from .data.splits import parse_fractions
from .errors import InputError
from .fsutil import write_json
from .models import load_model
from .training import Resume, TrainConfig, distill, epoch_batches

HISTORY, STUDENT, REPORT = "history.json", "student.safetensors", "report.json"


class DistillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teacher: str
    student: str
    data: str
    out: Path
    teacher_weights: str | None = None
    student_weights: str | None = None
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    alpha_end: float | None = Field(None, ge=0, le=1)
    batch_size: int = Field(64, ge=1)
    patience: int = Field(0, ge=0)
    split: str = "0.7,0.1,0.2"
    seed: int = 0
    force: bool = False
    resume: bool = False


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
    validate = _agreement_on(splits.calib, names, student.module, teacher.module)

    def save(epoch: int, record: dict, opt) -> None:
        _save_checkpoint(ckpt, epoch, student.module, opt)
        if record["validation"] > max((r["validation"] for r in history), default=-1.0):  # distill's rule
            _save_weights(student.module, ckpt / "best.safetensors")
        history.append(record)
        write_json(cfg.out / HISTORY, history)

    if not _stopped_early(history, cfg.patience):
        distill(student.module, teacher.module, epoch_batches(splits.train, names, cfg.batch_size, cfg.seed),
                train_cfg, validate=validate, epochs=range(len(history), cfg.epochs),
                resume=resume, checkpoint=save)
    if (ckpt / "best.safetensors").is_file():
        _load_weights(student.module, ckpt / "best.safetensors")
    _save_weights(student.module, cfg.out / STUDENT)
    report = _report(teacher.module, student.module, splits.eval, names, history)
    write_json(cfg.out / REPORT, report)
    return report


def _restore(cfg: DistillConfig, module: torch.nn.Module, ckpt: Path) -> tuple[list[dict], Resume | None]:
    """History and optimizer state of the last finished epoch, when resuming; else a fresh start."""
    history_path = cfg.out / HISTORY
    if not cfg.resume or not history_path.is_file():
        return [], None
    history = json.loads(history_path.read_text())
    last = len(history) - 1
    if last < 0:
        return [], None
    _load_weights(module, ckpt / f"epoch-{last:03d}.safetensors")
    optimizer = torch.load(ckpt / f"epoch-{last:03d}.optim.pt", weights_only=True)
    scores = [r.get("validation", -float("inf")) for r in history]
    best = int(np.argmax(scores))
    best_state = None
    if (ckpt / "best.safetensors").is_file():
        from safetensors.torch import load_file

        best_state = load_file(str(ckpt / "best.safetensors"))
    return history, Resume(optimizer=optimizer, best_score=scores[best], best_state=best_state,
                           since_best=last - best)


def _stopped_early(history: list[dict], patience: int) -> bool:
    if patience <= 0 or not history:
        return False
    scores = [r.get("validation", -float("inf")) for r in history]
    return len(scores) - 1 - int(np.argmax(scores)) >= patience


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


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))


def _predict(module: torch.nn.Module, samples, names: list[str]) -> np.ndarray:
    module.eval()
    outs = []
    with torch.no_grad():
        for inputs, _ in samples.batches(256):
            outs.append(module(*(torch.from_numpy(inputs[n]) for n in names)).numpy())
    return np.concatenate(outs)


def _agreement_on(samples, names, student, teacher):
    reference = _predict(teacher, samples, names).argmax(-1)
    return lambda: float((_predict(student, samples, names).argmax(-1) == reference).mean())


def _report(teacher, student, samples, names, history) -> dict[str, Any]:
    t_out, s_out = _predict(teacher, samples, names), _predict(student, samples, names)
    labels = samples.labels

    def acc(out):
        return None if labels is None else float((out.argmax(-1) == labels).mean() * 100)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    return {"teacher": {"accuracy": acc(t_out), "params": count(teacher)},
            "student": {"accuracy": acc(s_out), "params": count(student),
                        "agreement": float((s_out.argmax(-1) == t_out.argmax(-1)).mean())},
            "params_ratio": count(student) / count(teacher), "epochs_run": len(history),
            "best_epoch": int(np.argmax([r.get("validation", -1) for r in history])) if history else None,
            "eval_samples": len(samples)}
