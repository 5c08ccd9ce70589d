"""Fold BatchNorm into the convolution that feeds it, as the exported graph does.

Pairs are found by running the model once and matching each BatchNorm's
input tensor to a convolution's output, so any architecture works without a
tracer. Folding freezes the BN statistics, which QAD wants after warm-up.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def find_conv_bn_pairs(model: nn.Module, example: tuple[torch.Tensor, ...]) -> list[tuple[str, str]]:
    outputs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, n=name: outputs.__setitem__(id(o), n)))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, n=name: pairs.append((outputs[id(i[0])], n)) if id(i[0]) in outputs else None))
    try:
        with torch.no_grad():
            model.eval()(*example)
    finally:
        for h in hooks:
            h.remove()
    return pairs


def fold_batchnorm(model: nn.Module, example: tuple[torch.Tensor, ...]) -> list[tuple[str, str]]:
    """Replace conv weights by folded ones and the BatchNorm by Identity; returns the pairs."""
    pairs = find_conv_bn_pairs(model, example)
    modules = dict(model.named_modules())
    for conv_name, bn_name in pairs:
        fused = fuse_conv_bn_eval(modules[conv_name].eval(), modules[bn_name].eval())
        _set(model, conv_name, fused)
        _set(model, bn_name, nn.Identity())
    return pairs


def _set(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
