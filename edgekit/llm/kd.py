"""Token-level distillation of a causal LM: the student learns the teacher's next-token distribution.

Loss per position: KL(teacher || student) at temperature T, scaled by T^2, mixed with cross-entropy on the
text's own next token (weight alpha). The teacher's side is either its full logits (the teacher runs alongside)
or its cached top-k (offline: the teacher's distribution renormalized over its k best tokens, against the
student's log-probabilities of those tokens; with k = the vocabulary it is the exact KL). The output head is
applied a chunk of positions at a time and recomputed for the backward pass, so memory stays bounded for
vocabularies of 50k-150k tokens whatever the block length.

The loss is computed inside the trained module's forward (`CausalKD`), so DDP and FSDP see every parameter
used where they expect it: FSDP gathers a layer's shards only inside its forward.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

CHUNK = 64  # positions whose logits exist at once


def _chunk_sums(head, h, y, temperature: float, dense=None, values=None, indices=None) -> torch.Tensor:
    logits = head(h).float()
    log_q = F.log_softmax(logits / temperature, -1)
    if dense is not None:
        log_p = F.log_softmax(dense.float() / temperature, -1)
    else:
        log_p = F.log_softmax(values.float() / temperature, -1)
        log_q = log_q.gather(-1, indices.long())
    kl = (log_p.exp() * (log_p - log_q)).sum() * temperature ** 2
    return torch.stack([kl, F.cross_entropy(logits, y, reduction="sum")])


def kd_sums(head, hidden, targets, temperature: float, teacher_logits=None, values=None, indices=None,
            chunk: int = CHUNK) -> torch.Tensor:
    """[KL sum, CE sum] over positions; `hidden` [positions, width], `targets` [positions]; the teacher as
    `teacher_logits` [positions, vocab] or as its top-k `values`/`indices` [positions, k]."""
    total = hidden.new_zeros(2)
    for start in range(0, hidden.shape[0], chunk):
        piece = slice(start, start + chunk)
        teacher = ((teacher_logits[piece],) if teacher_logits is not None else (None, values[piece], indices[piece]))
        total = total + checkpoint(_chunk_sums, head, hidden[piece], targets[piece], temperature, *teacher,
                                   use_reentrant=False)
    return total


def causal_parts(model):
    """(decoder body, output head) of a transformers causal LM, or of one wrapped with LoRA adapters."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


class CausalKD(nn.Module):
    """The student with its distillation loss as its forward: `forward(ids, alpha, ...)` returns the loss parts;
    `forward(ids)` the student's greedy next tokens [blocks, length-1] (for agreement with the teacher)."""

    def __init__(self, student: nn.Module, temperature: float):
        super().__init__()
        self.student = student
        self.temperature = temperature

    def forward(self, ids, alpha: float | None = None, teacher_logits=None, values=None, indices=None):
        body, head = causal_parts(self.student)
        hidden = body(input_ids=ids).last_hidden_state[:, :-1]
        flat = hidden.reshape(-1, hidden.shape[-1])
        if alpha is None:
            return torch.cat([head(flat[s:s + CHUNK]).argmax(-1) for s in range(0, len(flat), CHUNK)]).view(ids.shape[0], -1)
        flatten = (lambda t: None if t is None else t.reshape(flat.shape[0], -1))
        sums = kd_sums(head, flat, ids[:, 1:].reshape(-1), self.temperature, flatten(teacher_logits),
                       flatten(values), flatten(indices))
        kd, task = sums / flat.shape[0]
        return {"kd": kd, "task": task, "total": (1 - alpha) * kd + alpha * task}


def mean_entropy(values: np.ndarray, temperature: float) -> np.ndarray:
    """Per block, the teacher's mean token entropy over its top-k at T: the curriculum's difficulty."""
    t = torch.from_numpy(values.astype(np.float32)) / temperature
    p = torch.softmax(t, -1)
    return (-(p * torch.log_softmax(t, -1)).sum(-1)).mean(-1).numpy()


def epoch_order(blocks: int, seed: int, epoch: int, pool: np.ndarray | None = None) -> np.ndarray:
    """The blocks of one epoch (the curriculum's pool, or all), reshuffled from the seed."""
    keep = pool if pool is not None else np.arange(blocks)
    return keep[np.random.default_rng(seed + 1000 + epoch).permutation(len(keep))]


def cosine_lr(peak: float, epoch: int, epochs: int) -> float:
    """The distillation loop's schedule: cosine annealing over the whole run, set per epoch."""
    return peak * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))


def teacher_batch(teacher, targets, ids: torch.Tensor, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """The teacher's side of a batch: its full logits (run now) or its cached top-k for those blocks."""
    if targets is None:
        with torch.no_grad():
            return {"teacher_logits": teacher(ids).logits[:, :-1]}
    return {"values": torch.from_numpy(targets.values[rows]), "indices": torch.from_numpy(targets.indices[rows])}


def agreement(model: Callable, blocks: np.ndarray, teacher_top1: np.ndarray, batch: int = 8) -> float:
    """Share of positions where the student's greedy next token is the teacher's."""
    hits = 0
    with torch.no_grad():
        for s in range(0, len(blocks), batch):
            predicted = model(torch.from_numpy(blocks[s:s + batch]))
            hits += int((predicted.numpy() == teacher_top1[s:s + batch]).sum())
    return hits / max(1, teacher_top1.size)


def _next_token_log_probs(model, block: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities [length-1, vocab] of one block's next tokens, the tokens that follow)."""
    ids = torch.from_numpy(block[None])
    return torch.log_softmax(model(ids).logits[0, :-1].float(), -1), ids[0, 1:]


def score(student, teacher, targets, blocks: np.ndarray) -> dict[str, float]:
    """Perplexity on `blocks`, and mean KL(teacher || student) per token and top-1 agreement with the teacher: from
    its full logits, or over its cached top-k (`targets`), one block at a time so the logits stay small."""
    nll, kl, hits, count = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for row, block in enumerate(blocks):
            log_q, following = _next_token_log_probs(student, block)
            nll -= float(log_q.gather(-1, following[:, None]).sum())
            if targets is not None:
                log_p = torch.log_softmax(torch.from_numpy(targets.values[row]).float(), -1)
                top = torch.from_numpy(targets.indices[row]).long()
                kl += float((log_p.exp() * (log_p - log_q.gather(-1, top))).sum())
                teacher_top1 = top[:, 0]
            else:
                log_p, _ = _next_token_log_probs(teacher, block)
                kl += float((log_p.exp() * (log_p - log_q)).sum())
                teacher_top1 = log_p.argmax(-1)
            hits += int((log_q.argmax(-1) == teacher_top1).sum())
            count += log_q.shape[0]
    return {"perplexity": math.exp(nll / count), "kl": kl / count, "top1_agreement": hits / count}


def perplexity(model, blocks: np.ndarray) -> float:
    nll, count = 0.0, 0
    with torch.no_grad():
        for block in blocks:
            log_q, following = _next_token_log_probs(model, block)
            nll -= float(log_q.gather(-1, following[:, None]).sum())
            count += log_q.shape[0]
    return math.exp(nll / count)


def teacher_logits(teacher, blocks: np.ndarray, device, batch: int = 8):
    """The teacher's next-token logits [n, length-1, vocab] for a few blocks at a time (a generator)."""
    with torch.no_grad():
        for s in range(0, len(blocks), batch):
            yield teacher(torch.from_numpy(blocks[s:s + batch]).to(device)).logits[:, :-1].cpu()
