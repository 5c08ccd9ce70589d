"""Attention-map transfer between transformer pairs: the student's attention distributions learn the teacher's.

Each student layer is paired with a teacher layer spread uniformly over the teacher's depth (student
layer i of L_s with teacher layer round((i+1)·L_t/L_s) - 1). Maps are averaged over heads, so the
pair may differ in head count and width, and compared by KL(teacher ‖ student) per query token,
counting only real (unpadded) query tokens. Attention modules run in their eager form while hooked,
because fused kernels do not return the attention probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekit.errors import InputError

EPS = 1e-8


class AttentionKD(nn.Module):
    name = "attention"

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight
        self.pairs: list[tuple[int, int]] = []
        self._maps: dict[tuple[int, int], torch.Tensor] = {}
        self._mask: torch.Tensor | None = None
        self._hooks: list = []
        self._restore: list = []

    def attach(self, student: nn.Module, teacher: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if teacher is None:
            raise InputError("--attention-kd needs a teacher; give --teacher")
        layers = [attention_layers(model, role) for model, role in ((student, "student"), (teacher, "teacher"))]
        n_s, n_t = len(layers[0]), len(layers[1])
        self.pairs = [(i, max(0, round((i + 1) * n_t / n_s) - 1)) for i in range(n_s)]
        for side, model in enumerate((student, teacher)):
            self._eager(model)
            for index, module in enumerate(layers[side]):
                self._hooks.append(module.register_forward_hook(self._keep(side, index)))
        self._hooks.append(student.register_forward_pre_hook(self._keep_mask, with_kwargs=True))

    def loss(self) -> torch.Tensor:
        """Mean over layer pairs of the head-averaged attention KL on real query tokens; clears the captures."""
        total = 0.0
        for s, t in self.pairs:
            student = self._maps[(0, s)].float().mean(1)
            teacher = self._maps[(1, t)].detach().float().mean(1)
            if student.shape != teacher.shape:
                raise InputError(f"--attention-kd: attention maps {tuple(student.shape)} and {tuple(teacher.shape)} "
                                 "differ; student and teacher must read the same tokens")
            kl = (teacher * ((teacher + EPS).log() - (student + EPS).log())).sum(-1)  # per query token
            mask = self._mask if self._mask is not None else torch.ones_like(kl)
            # a mean per sample, then over samples: the same whether a batch is whole or split over processes
            total = total + ((kl * mask).sum(-1) / mask.sum(-1).clamp_min(1)).mean()
        self._maps.clear()
        return total / max(len(self.pairs), 1)

    def detach(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for model, implementation in self._restore:
            model.set_attn_implementation(implementation)
        self._restore.clear()

    def _eager(self, model: nn.Module) -> None:
        inner = getattr(model, "model", model)
        config = getattr(inner, "config", None)
        current = getattr(config, "_attn_implementation", None)
        if current not in (None, "eager") and hasattr(inner, "set_attn_implementation"):
            inner.set_attn_implementation("eager")
            self._restore.append((inner, current))

    def _keep(self, side: int, index: int):
        def hook(module, args, output):
            weights = output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else None
            if not isinstance(weights, torch.Tensor) or weights.dim() != 4:
                raise InputError("--attention-kd: an attention layer returned no attention probabilities; "
                                 "this architecture does not expose them")
            self._maps[(side, index)] = weights
        return hook

    def _keep_mask(self, module, args, kwargs):
        """The attention mask, when the model takes one (second input of a text model)."""
        names = getattr(module, "input_names", [])
        self._mask = args[names.index("attention_mask")].float() if "attention_mask" in names else None


def attention_layers(model: nn.Module, role: str) -> list[nn.Module]:
    """The self-attention modules in forward order (transformers' *SelfAttention classes)."""
    found = [m for _, m in model.named_modules() if type(m).__name__.endswith("SelfAttention")]
    if not found:
        raise InputError(f"--attention-kd: the {role} has no self-attention layers; use it with transformer "
                         "pairs, or --feature-kd for other models")
    return found
