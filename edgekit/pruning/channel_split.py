"""Make `torch.chunk`/`split` of a conv output prunable by computing each part with its own conv.

Torch-Pruning's dependency graph loses channel indices when a conv output is
split along channels inside `forward` (YOLOv8's C2f does `cv1(x).chunk(2, 1)`).
We find such splits by watching one forward pass, replace the producing block
(a conv, optionally followed by BatchNorm and an element-wise activation) with
one block per part, and hand the parts straight to the split call, so the
graph sees independent convolutions. The function is unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

SPLITS = {torch.Tensor.chunk, torch.chunk, torch.Tensor.split, torch.split}
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU,
               nn.Identity, nn.Tanh, nn.Mish)


class PartsTensor(torch.Tensor):
    """The concatenated output that also remembers its parts; a matching split returns the parts."""

    parts: tuple[torch.Tensor, ...]

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SPLITS and isinstance(args[0], PartsTensor) and _dim(func, args, kwargs) == 1:
            return tuple(args[0].parts)
        args = tuple(a.as_subclass(torch.Tensor) if isinstance(a, PartsTensor) else a for a in args)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)


def _dim(func, args, kwargs) -> int:
    dim = kwargs.get("dim", args[2] if len(args) > 2 else 0)
    return dim if dim >= 0 else args[0].dim() + dim


class SplitBlock(nn.Module):
    """One sub-block per channel part; the output is their concatenation (with the parts attached)."""

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = tuple(part(x) for part in self.parts)
        joined = torch.cat(outs, 1).as_subclass(PartsTensor)
        joined.parts = outs
        return joined


class _Watch(TorchFunctionMode):
    def __init__(self, produced: dict[int, str]):
        super().__init__()
        self.produced = produced
        self.found: dict[str, list[int]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func in SPLITS and id(args[0]) in self.produced and _dim(func, args, kwargs) == 1:
            self.found[self.produced[id(args[0])]] = [int(r.shape[1]) for r in result]
        return result


def find_channel_splits(model: nn.Module, example: tuple[torch.Tensor, ...]) -> dict[str, list[int]]:
    """Blocks whose output is split along channels in `forward`, with the part sizes."""
    produced: dict[int, str] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: produced.__setitem__(id(o), n))
             for name, m in model.named_modules() if splittable(m)]
    watch = _Watch(produced)
    try:
        with torch.no_grad(), watch:
            model.eval()(*example)
    finally:
        for h in hooks:
            h.remove()
    return watch.found


def splittable(module: nn.Module) -> bool:
    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[0], nn.Conv2d):
        return module[0].groups == 1 and all(
            isinstance(m, (nn.BatchNorm2d, *ELEMENTWISE)) for m in list(module)[1:])
    return False


def split_blocks(model: nn.Module, splits: dict[str, list[int]]) -> None:
    """Replace each named block by a SplitBlock with one slice of its channels per part."""
    for name, sizes in splits.items():
        block = model.get_submodule(name)
        parts, start = [], 0
        for size in sizes:
            parts.append(_slice(block, start, start + size))
            start += size
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, SplitBlock(parts))


def _slice(block: nn.Module, lo: int, hi: int) -> nn.Module:
    part = copy.deepcopy(block)
    layers = [part] if isinstance(part, nn.Conv2d) else list(part)
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                layer.weight = nn.Parameter(layer.weight[lo:hi].clone())
                if layer.bias is not None:
                    layer.bias = nn.Parameter(layer.bias[lo:hi].clone())
                layer.out_channels = hi - lo
            elif isinstance(layer, nn.BatchNorm2d):
                for attr in ("weight", "bias"):
                    setattr(layer, attr, nn.Parameter(getattr(layer, attr)[lo:hi].clone()))
                layer.running_mean = layer.running_mean[lo:hi].clone()
                layer.running_var = layer.running_var[lo:hi].clone()
                layer.num_features = hi - lo
    return part
