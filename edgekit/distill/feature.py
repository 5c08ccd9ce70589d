"""Feature distillation: the student's chosen layers learn to match the teacher's.

Each pair compares a student module's output with a teacher module's output
by mean squared error. Where widths differ (a pruned student, a smaller
architecture) a learned projection maps the student's channels to the
teacher's: a 1×1 convolution for feature maps, a linear layer for token
features. The projections are trained with the student and dropped after.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.errors import InputError


def parse_pairs(specs: list[str] | None) -> list[tuple[str, str]]:
    """`student_layer:teacher_layer`, or one name for both (a pruned student keeps the names)."""
    pairs = []
    for spec in specs or []:
        student, _, teacher = spec.partition(":")
        if not student:
            raise InputError(f"--feature-kd {spec!r}: give STUDENT_LAYER[:TEACHER_LAYER], e.g. block2 or layer3:encoder.3")
        pairs.append((student, teacher or student))
    return pairs


class FeatureKD(nn.Module):
    name = "feature"

    def __init__(self, pairs: list[tuple[str, str]], weight: float = 1.0):
        super().__init__()
        self.pairs = pairs
        self.weight = weight
        self.projections = nn.ModuleList()
        self._seen: dict[tuple[str, int], torch.Tensor] = {}
        self._hooks: list = []

    def attach(self, student: nn.Module, teacher: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        """Hook both models and size the projections from one forward pass."""
        if teacher is None:
            raise InputError("--feature-kd needs a teacher; give --teacher or keep the default (the FP32 student)")
        for side, model in ((0, student), (1, teacher)):
            for i, pair in enumerate(self.pairs):
                module = _find(model, pair[side], ("student", "teacher")[side])
                self._hooks.append(module.register_forward_hook(self._keep(side, i)))
        with torch.no_grad():
            student.eval()(*inputs)
            teacher.eval()(*inputs)
        self.projections = nn.ModuleList(self._projection(i) for i in range(len(self.pairs)))
        self._seen.clear()

    def loss(self) -> torch.Tensor:
        """Mean over pairs of MSE(projected student feature, teacher feature); clears the captures."""
        total = sum(F.mse_loss(proj(self._seen[(0, i)].float()), self._seen[(1, i)].detach().float())
                    for i, proj in enumerate(self.projections))
        self._seen.clear()
        return total / max(len(self.pairs), 1)

    def detach(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def _keep(self, side: int, index: int):
        def hook(module, args, output):
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(tensor, torch.Tensor):
                self._seen[(side, index)] = tensor
        return hook

    def _projection(self, i: int) -> nn.Module:
        pair = self.pairs[i]
        if (0, i) not in self._seen or (1, i) not in self._seen:
            raise InputError(f"--feature-kd {pair[0]}:{pair[1]}: a layer returned no tensor; pick another layer")
        s, t = self._seen[(0, i)], self._seen[(1, i)]
        axis = 1 if s.dim() == 4 else -1
        rest_s = [d for k, d in enumerate(s.shape) if k != axis % s.dim()]
        rest_t = [d for k, d in enumerate(t.shape) if k != axis % t.dim()]
        if s.dim() != t.dim() or rest_s != rest_t:
            raise InputError(f"--feature-kd {pair[0]}:{pair[1]}: shapes {tuple(s.shape)} and {tuple(t.shape)} "
                             "differ beyond the channel axis; pair layers at the same resolution")
        if s.shape[axis] == t.shape[axis]:
            return nn.Identity()
        if s.dim() == 4:
            return nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False)
        return nn.Linear(s.shape[-1], t.shape[-1], bias=False)


def _find(model: nn.Module, name: str, role: str) -> nn.Module:
    """The module by its path, also under a wrapper (`model.block2` found as `block2`)."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    matches = [m for path, m in modules.items() if path.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    leaves = [p for p, m in modules.items() if p and "edgekit" not in p and not list(m.children())][:4]
    raise InputError(f"--feature-kd: the {role} has no single layer {name!r}; give a module path such as "
                     f"{', '.join(leaves) or '(none)'}")
