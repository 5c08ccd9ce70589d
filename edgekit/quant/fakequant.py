"""Fake quantization with a straight-through estimator, numerically matching ORT's quantizer.

Weights: int8 symmetric per output channel, range [-127, 127], zero point 0.
Activations: uint8 asymmetric per tensor (ORT preset) or int8 symmetric
(TensorRT preset), range widened to include 0.
These are the formulas ORT's QDQ quantizer uses, so the trained weights and
ranges survive export unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _RoundSTE(torch.autograd.Function):
    """Round forward; pass the gradient straight through backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Quantize-dequantize; clamp zeroes the gradient outside the representable range."""
    q = torch.clamp(_RoundSTE.apply(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


class WeightFakeQuant(nn.Module):
    """Parametrization: per-output-channel symmetric int8 of the (BN-folded) weight."""

    def __init__(self):
        super().__init__()
        self.enabled = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        absmax = weight.detach().abs().flatten(1).amax(1).clamp_min(1e-12)
        scale = (absmax / 127.0).view(-1, *([1] * (weight.dim() - 1)))
        return fake_quant(weight, scale, torch.zeros_like(scale), -127, 127)


class ActivationFakeQuant(nn.Module):
    """Per-tensor fake quant of one graph tensor, starting from its calibrated range.

    uint8 or int8 asymmetric (ORT presets) or int8 symmetric with zero point 0
    (TensorRT preset), by the formulas of ORT's `compute_scale_zp`. While
    `observing`, training batches move the range by an exponential moving
    average (the weights change under QAD, so their activations do); then it
    is frozen. With `learnable` the range ends are parameters trained through
    the straight-through estimator instead (LSQ-style gradient scaling); either
    way export reads the final range, so the graph holds fixed scales.
    """

    def __init__(self, low: float, high: float, momentum: float = 0.05, symmetric: bool = False,
                 learnable: bool = False, tensor: str = "", signed: bool = False):
        super().__init__()
        low_t, high_t = torch.tensor(float(low)), torch.tensor(float(high))
        if learnable:
            self.low, self.high = nn.Parameter(low_t), nn.Parameter(high_t)
        else:
            self.register_buffer("low", low_t)
            self.register_buffer("high", high_t)
        self.momentum = momentum
        self.symmetric = symmetric
        self.learnable = learnable
        self.tensor = tensor
        self.observing = not learnable
        self.enabled = True
        self.qmin, self.qmax = (-127, 127) if symmetric else (-128, 127) if signed else (0, 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.observing:
            with torch.no_grad():
                low, high = _global_extremes(x)
                self.low.lerp_(low.clamp_max(0.0), self.momentum)
                self.high.lerp_(high.clamp_min(0.0), self.momentum)
        if not self.enabled:
            return x
        scale, zero_point = self.qparams(x.numel() if self.learnable else 0)
        return fake_quant(x, scale, zero_point, self.qmin, self.qmax)

    def qparams(self, numel: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.low, self.high
        if numel:  # LSQ: scale the range gradients so they do not swamp the weights'
            g = 1.0 / math.sqrt(numel * self.qmax)
            low, high = _grad_scale(low, g), _grad_scale(high, g)
        low, high = low.clamp_max(0.0), high.clamp_min(0.0)
        if self.symmetric:
            scale = (torch.maximum(-low, high) / self.qmax).clamp_min(1e-8)
            return scale, torch.zeros_like(scale)
        scale = ((high - low) / 255.0).clamp_min(1e-8)
        zero_point = torch.clamp(_RoundSTE.apply(self.qmin - low / scale), self.qmin, self.qmax)
        return scale, zero_point

    def range(self) -> list[float]:
        return [float(self.low.detach()), float(self.high.detach())]


def _global_extremes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's min and max; under torchrun over every process's slice, so the range each process
    observes is the one a single process would see on the whole batch (not only process 0's half)."""
    import torch.distributed as dist

    low, high = x.min(), x.max()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        both = torch.stack([-low, high])
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        low, high = -both[0], both[1]
    return low, high


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """x forward, g × its gradient backward."""
    return (x - x * g).detach() + x * g
