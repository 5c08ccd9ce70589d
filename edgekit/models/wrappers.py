"""Adapters that give every model one calling convention: named tensors in, logits out."""

from __future__ import annotations

import inspect

import torch
from torch import nn


class LogitsOnly(nn.Module):
    """Return the main output tensor whatever the model returns (tuple, dict, ModelOutput).

    Pruning, distillation and ONNX export all need a plain tensor output; the
    wrapped model is kept as `.model` so its parameter names stay predictable.
    """

    def __init__(self, model: nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(self.input_names, args))
        out = self.model(**kwargs)
        return main_output(out)


def main_output(out):
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict):
        return next(iter(out.values()))
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"cannot find a tensor in model output of type {type(out).__name__}")


def forward_input_names(model: nn.Module) -> list[str]:
    """Names of forward() arguments without defaults: the model's required inputs.

    transformers models default every argument to None; their main input
    (plus the attention mask for text) is what they need.
    """
    if hasattr(model, "main_input_name"):
        return transformers_input_names(model)
    params = inspect.signature(model.forward).parameters.values()
    names = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return names or ["x"]


def transformers_input_names(model: nn.Module) -> list[str]:
    main = getattr(model, "main_input_name", "input_ids")
    return [main] + (["attention_mask"] if main == "input_ids" else [])
