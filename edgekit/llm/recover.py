"""Distillation for causal LMs: the student learns the teacher's next-token distribution, token by token.

Loss per position: KL(teacher || student) at temperature T, scaled by T^2 (so its gradients keep their size as
T changes), mixed with cross-entropy on the text's own next token. The output head is applied to the
student's hidden states a chunk of positions at a time, each chunk's [positions, vocabulary] logits scored
and freed before the next (recomputed for the backward pass), so memory stays bounded for vocabularies of
50k-150k tokens whatever the block length. Training stops at a wall-clock budget: recovery after pruning is
a stage of a job a user waits for (a deadline on the monotonic clock; nothing here is a timing figure).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

CHUNK = 64  # positions whose logits exist at once


@dataclass
class RecoveryLog:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


def chunked_kd_loss(head, hidden, teacher_logits, targets, temperature: float, alpha: float, chunk: int = CHUNK):
    """Mean over positions of T^2 KL(teacher_T || student_T) * (1 - alpha) + alpha * CE(student, targets).
    `hidden` [positions, width] (the student's last hidden states), `teacher_logits` [positions, vocab]."""
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    def part(h, t, y):
        logits = head(h).float()
        kl = F.kl_div(F.log_softmax(logits / temperature, -1), F.log_softmax(t.float() / temperature, -1),
                      log_target=True, reduction="sum") * temperature ** 2
        ce = F.cross_entropy(logits, y, reduction="sum")
        return (1 - alpha) * kl + alpha * ce

    total = hidden.new_zeros(())
    for start in range(0, hidden.shape[0], chunk):
        end = start + chunk
        total = total + checkpoint(part, hidden[start:end], teacher_logits[start:end], targets[start:end],
                                   use_reentrant=False)
    return total / hidden.shape[0]


def distill(student, teacher, blocks: np.ndarray, minutes: float, lr: float = 1e-4, temperature: float = 2.0,
            alpha: float = 0.5, batch: int = 4, seed: int = 0, progress=None) -> RecoveryLog:
    """Train `student` on `blocks` [n, length] against `teacher` until `minutes` pass (whole steps; the epochs
    repeat with a fresh order). AdamW, linear warm-up over the first 5% of the steps the budget is expected to
    allow, then cosine decay to a tenth."""
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    student.train()
    teacher.eval()
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    log, start = RecoveryLog(), time.monotonic()
    budget, expected = minutes * 60, None
    order: list[int] = []
    while time.monotonic() - start < budget:
        if len(order) < batch:
            order += list(rng.permutation(len(blocks)))
        ids = torch.from_numpy(np.asarray([blocks[i] for i in order[:batch]], np.int64))
        order = order[batch:]
        if expected is not None:
            _set_lr(optimizer, lr, log.steps, expected)
        loss = _step(student, teacher, ids, temperature, alpha)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        log.steps += 1
        log.tokens += int(ids.numel())
        log.losses.append(float(loss.detach()))
        if log.steps == 2:  # the schedule's length, from the time one step takes
            expected = max(2, int(budget / ((time.monotonic() - start) / 2)))
        if progress:
            progress(log)
    log.seconds = time.monotonic() - start
    student.eval()
    return log


def _step(student, teacher, ids, temperature: float, alpha: float):
    import torch

    with torch.no_grad():
        teacher_logits = teacher(ids).logits[:, :-1]
    hidden = student.model(ids).last_hidden_state[:, :-1]
    width = hidden.shape[-1]
    return chunked_kd_loss(student.lm_head, hidden.reshape(-1, width), teacher_logits.reshape(-1, teacher_logits.shape[-1]),
                           ids[:, 1:].reshape(-1), temperature, alpha)


def _set_lr(optimizer, peak: float, step: int, total: int) -> None:
    warm = max(1, total // 20)
    if step < warm:
        value = peak * (step + 1) / warm
    else:
        progress = min(1.0, (step - warm) / max(1, total - warm))
        value = peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    for group in optimizer.param_groups:
        group["lr"] = value
