"""Knowledge-distillation loss and a small, seeded training loop shared by distillation and QAD."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .feature_kd import FeatureKD


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
            temperature: float, alpha: float) -> dict[str, torch.Tensor]:
    """KL(teacher || student) at temperature T scaled by T², plus alpha × task loss; for outputs
    that are not (samples, classes), mean squared error to the teacher's outputs.

    Returned as parts so logs and tests see each one; `total` is what to minimise.
    """
    if student_logits.dim() != 2:
        # Dense outputs (detection maps, regression): a softmax over their last axis means
        # nothing, so the student matches the teacher's values directly.
        kd = F.mse_loss(student_logits, teacher_logits)
        return {"kd": kd, "total": kd}
    t = temperature
    kd = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    parts = {"kd": kd}
    total = kd
    if labels is not None and alpha > 0:
        task = F.cross_entropy(student_logits, labels)
        parts["task"] = task
        total = (1 - alpha) * kd + alpha * task
    parts["total"] = total
    return parts


@dataclass
class TrainConfig:
    epochs: int = 3
    lr: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.5
    batch_size: int = 64
    seed: int = 0
    alpha_end: float | None = None  # alpha moves linearly from `alpha` to this over the epochs
    patience: int = 0  # stop after this many epochs without a better validation score (0: never)


def alpha_at(cfg: TrainConfig, epoch: int) -> float:
    """The task-loss weight of this epoch: constant, or a linear ramp to `alpha_end`."""
    if cfg.alpha_end is None or cfg.epochs < 2:
        return cfg.alpha
    return cfg.alpha + (cfg.alpha_end - cfg.alpha) * epoch / (cfg.epochs - 1)


Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor | None]


@dataclass
class Resume:
    """What an interrupted `distill` needs besides the student's weights."""

    optimizer: dict
    best_score: float = -float("inf")
    best_state: dict | None = None
    since_best: int = 0


def distill(student: nn.Module, teacher: nn.Module | None, batches: Callable[[int], Iterable[Batch]],
            cfg: TrainConfig, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
            train_mode: Callable[[nn.Module], None] | None = None,
            validate: Callable[[], float] | None = None, feature_kd: "FeatureKD | None" = None,
            epochs: range | None = None, resume: "Resume | None" = None,
            checkpoint: Callable[[int, dict[str, float], torch.optim.Optimizer], None] | None = None,
            ) -> list[dict[str, float]]:
    """Train `student` against `teacher` (or labels only when teacher is None).

    `batches(epoch)` yields (inputs, labels) so the caller owns shuffling and
    seeding; `train_mode` lets QAD keep BatchNorm frozen while training.
    With `validate` (higher is better, e.g. agreement on held-out data) the
    best epoch's weights are kept, and training stops after `cfg.patience`
    epochs without improvement. `feature_kd` adds its loss on the chosen layer pairs.
    `epochs` runs part of the schedule (learning rate and alpha follow all
    `cfg.epochs`), so a caller can change the model between parts. `checkpoint`
    is called after every epoch with the optimizer; `resume` restores its state
    and the best epoch so far, so an interrupted run continues where it stopped.
    """
    torch.manual_seed(cfg.seed)
    params = [p for p in student.parameters() if p.requires_grad]
    if feature_kd is not None:
        feature_kd.attach(student, teacher, next(iter(batches(0)))[0])
        params += list(feature_kd.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    if teacher is not None:
        teacher.eval()
    history = []
    best_score, best_state, since_best = -float("inf"), None, 0
    if resume is not None:
        opt.load_state_dict(resume.optimizer)
        best_score, best_state, since_best = resume.best_score, resume.best_state, resume.since_best
    for epoch in epochs if epochs is not None else range(cfg.epochs):
        alpha = alpha_at(cfg, epoch)
        for group in opt.param_groups:  # cosine annealing over the whole schedule
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / max(cfg.epochs, 1)))
        (train_mode or (lambda m: m.train()))(student)
        sums: dict[str, float] = {}
        count = 0
        for inputs, labels in batches(epoch):
            logits = student(*inputs)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(*inputs)
                parts = kd_loss(logits, target, labels, cfg.temperature, alpha)
                if feature_kd is not None:
                    parts["feature"] = feature_kd.loss()
                    parts["total"] = parts["total"] + feature_kd.weight * parts["feature"]
            else:
                parts = {"task": F.cross_entropy(logits, labels)}
                parts["total"] = parts["task"]
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            count += 1
        student.eval()
        record = {k: v / max(count, 1) for k, v in sums.items()}
        record["alpha"] = alpha
        stop = False
        if validate is not None:
            record["validation"] = score = float(validate())
            if score > best_score:
                best_score, since_best = score, 0
                best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
            else:
                since_best += 1
                stop = cfg.patience > 0 and since_best >= cfg.patience
        history.append(record)
        if on_epoch:
            on_epoch(epoch, record)
        if checkpoint:
            checkpoint(epoch, record, opt)
        if stop:
            break
    if feature_kd is not None:
        feature_kd.detach()
    if best_state is not None:
        student.load_state_dict(best_state)
    student.eval()
    return history


def epoch_batches(samples, names: list[str], batch_size: int, seed: int) -> Callable[[int], Iterable[Batch]]:
    """`batches(epoch)` over a SampleSet: reshuffled each epoch from `seed`, as torch tensors."""
    import numpy as np

    labels_ok = samples.labels is not None

    def batches(epoch: int):
        order = np.random.default_rng(seed + 1000 + epoch).permutation(len(samples))
        for inputs, labels in samples.batches(batch_size, order):
            tensors = tuple(torch.from_numpy(inputs[n]) for n in names)
            yield tensors, (torch.from_numpy(labels) if labels_ok else None)
    return batches
