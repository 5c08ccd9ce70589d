"""The epochs of language-model distillation: one pass with each process on its slice of every batch, and the
checkpoint after it (the weights, or the adapters only, with the optimizer state, gathered from the shards under
FSDP), read back by --resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekit.distill import distributed
from edgekit.distill.checkpoints import save_weights
from edgekit.errors import InputError
from edgekit.llm import kd


def restore(student, ckpt: Path, last: int, keep: set[str] | None) -> dict:
    """The last finished epoch's weights into the student (before it is wrapped or sharded), and its optimizer
    and random state; `keep` names the adapters when only they were saved."""
    from safetensors.torch import load_file

    weights, state_path = ckpt / f"epoch-{last:03d}.safetensors", ckpt / f"epoch-{last:03d}.state.pt"
    try:
        student.load_state_dict(load_file(str(weights)), strict=keep is None)
        return torch.load(state_path, weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for damaged or missing files
        raise InputError(f"checkpoint {weights.parent} is damaged ({' '.join(str(exc).split())[:120]}); "
                         "start again with --force instead of --resume") from exc


def patience_spent(history: list[dict], patience: int) -> bool:
    """`--patience` epochs have passed since the best validation agreement."""
    if patience <= 0 or not history:
        return False
    best = int(np.argmax([r["validation"] for r in history]))
    return len(history) - 1 - best >= patience


def run_epoch(model, opt, teacher, targets, blocks, order, train, alpha: float, runtime, advance) -> dict[str, float]:
    """One pass over `order`; each process takes its slice of every batch, `accumulate` batches per step."""
    from edgekit.distill.distributed import autocast, mean_over_processes, no_sync

    batches = [order[s:s + train.batch_size] for s in range(0, len(order), train.batch_size)]
    batches = [b for b in batches if len(b) >= runtime.world]
    sizes, sums = [len(b) for b in batches], {}
    params = [p for p in model.parameters() if p.requires_grad]
    opt.zero_grad(set_to_none=True)
    for i, rows in enumerate(batches):
        group_start = i - i % train.accumulate
        group = sizes[group_start:group_start + train.accumulate]
        step = i - group_start + 1 == len(group)
        local = np.array_split(rows, runtime.world)[runtime.rank]
        ids = torch.from_numpy(blocks[local]).to(runtime.device)
        extra = {k: v.to(runtime.device) for k, v in kd.teacher_batch(teacher, targets, ids, local).items()}
        with no_sync(model, not step), autocast(runtime, train.precision):
            parts = model(ids, alpha, **extra)
        (parts["total"] * (sizes[i] / sum(group))).backward()
        if step:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) * sizes[i]
        advance(1)
    record = mean_over_processes({k: v / max(sum(sizes), 1) for k, v in sums.items()}, runtime)
    record["alpha"] = alpha
    return record


def save_epoch(ckpt: Path, epoch: int, trainee, opt, keep, record, history, runtime) -> None:
    """Weights (the adapters only under LoRA) and optimizer state of this epoch; the best epoch's weights too."""
    weights, optimizer = distributed.full_state(trainee, opt)  # every process takes part under FSDP
    if not runtime.main:
        return
    prefix = "student."
    student = {k[len(prefix):]: v for k, v in weights.items()
               if k.startswith(prefix) and (keep is None or k[len(prefix):] in keep)}
    save_weights(student, ckpt / f"epoch-{epoch:03d}.safetensors")
    tmp = ckpt / f".epoch-{epoch:03d}.state.pt.partial"
    torch.save({"optimizer": optimizer, "rng": torch.get_rng_state()}, tmp)
    tmp.replace(ckpt / f"epoch-{epoch:03d}.state.pt")
    if record["validation"] > max((r["validation"] for r in history), default=-float("inf")):
        save_weights(student, ckpt / "best.safetensors")


def drop_older(ckpt: Path, epoch: int) -> None:
    """A language model's checkpoint is large: the last epoch (for --resume) and the best are kept."""
    for old in ckpt.glob("epoch-*"):
        if not old.name.startswith(f"epoch-{epoch:03d}."):
            old.unlink()
