"""Recovery after pruning: the pruned model distilled from the unpruned one on the training text, for a set time.

The loss is `edgekit.llm.kd`'s (token KL at T scaled by T^2 mixed with cross-entropy, in vocabulary chunks), the
teacher's full logits computed alongside. Training stops at a wall-clock budget: recovery after pruning is
a stage of a job a user waits for (a deadline on the monotonic clock; nothing here is a timing figure).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from edgekit.llm.kd import kd_sums


@dataclass
class RecoveryLog:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


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
    flat = hidden.reshape(-1, hidden.shape[-1])
    kl, ce = kd_sums(student.lm_head, flat, ids[:, 1:].reshape(-1), temperature,
                     teacher_logits.reshape(flat.shape[0], -1)) / flat.shape[0]
    return (1 - alpha) * kl + alpha * ce


def _set_lr(optimizer, peak: float, step: int, total: int) -> None:
    warm = max(1, total // 20)
    if step < warm:
        value = peak * (step + 1) / warm
    else:
        progress = min(1.0, (step - warm) / max(1, total - warm))
        value = peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    for group in optimizer.param_groups:
        group["lr"] = value
