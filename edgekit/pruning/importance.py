"""Channel importance criteria: L1 (default), L2, BatchNorm scale, first-order Taylor."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from edgekit.errors import InputError

CRITERIA = ("l1", "l2", "bn-scale", "taylor")


def make_importance(name: str):
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "bn-scale":
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    raise InputError(f"--importance {name} is unknown; choose one of {', '.join(CRITERIA)}")


def accumulate_taylor_gradients(model: nn.Module, batches: Iterable[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]],
                                teacher: nn.Module | None = None, limit: int = 8) -> None:
    """Taylor importance is |weight x gradient|: fill .grad from a few batches of real data.

    The loss is the task loss where labels exist, else agreement with the
    teacher's (or the model's own) predictions.
    """
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    model.eval()
    for count, (inputs, labels) in enumerate(batches):
        if count >= limit:
            break
        logits = model(*inputs)
        if labels is None:
            with torch.no_grad():
                labels = (teacher(*inputs) if teacher is not None else logits).argmax(-1)
        F.cross_entropy(logits, labels).backward()
