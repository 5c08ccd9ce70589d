"""An easy-to-hard curriculum by teacher entropy: the share of hard samples grows over the epochs.

Samples are ranked once by the entropy of the teacher's softened prediction (confident = easy). Epoch
e trains on the easiest fraction f_e of them, f_e rising linearly from `start` in the first epoch to
1 (every sample) in the last, reshuffled each epoch. Hard samples thus make up a growing share of
what the student sees, once it has learnt the clear cases.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from edgekit.errors import InputError


def entropy_ranking(teacher, samples, names: list[str], temperature: float) -> np.ndarray:
    """Sample indices from the most to the least confident teacher prediction."""
    from edgekit.measure.fidelity import torch_outputs

    logits = torch.from_numpy(torch_outputs(teacher, samples, names)).float()
    if logits.dim() != 2:
        raise InputError("--curriculum ranks samples by the teacher's class entropy; the teacher's outputs "
                         "are not class scores, so drop --curriculum")
    probs = torch.softmax(logits / temperature, dim=-1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
    return np.argsort(entropy.numpy(), kind="stable")


def fraction_at(start: float, epoch: int, epochs: int) -> float:
    return 1.0 if epochs < 2 else start + (1.0 - start) * min(epoch, epochs - 1) / (epochs - 1)


def curriculum_batches(samples, names: list[str], batch_size: int, seed: int, ranking: np.ndarray,
                       start: float, epochs: int) -> Callable[[int], Iterable]:
    """`batches(epoch)` over the easiest `fraction_at(epoch)` of the samples, shuffled from `seed`."""
    from edgekit.distill.loop import epoch_batches

    def pool(epoch: int) -> np.ndarray:
        return ranking[:max(1, int(round(fraction_at(start, epoch, epochs) * len(ranking))))]
    return epoch_batches(samples, names, batch_size, seed, pool)
