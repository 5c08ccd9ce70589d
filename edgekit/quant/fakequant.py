"""Fake quantization with a straight-through estimator, numerically matching ORT's quantizer.

Weights: int8 symmetric per output channel, range [-127, 127], zero point 0.
Activations: uint8 asymmetric per tensor, range widened to include 0.
These are the formulas ORT's QDQ quantizer uses, so the trained weights and
ranges survive export unchanged.
"""

from __future__ import annotations

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
    """Per-tensor uint8 fake quant whose range starts at the calibrated one.

    While `observing`, training batches move the range by an exponential
    moving average (the weights change under QAD, so their activations do);
    then it is frozen. The range lives in buffers, so it is saved with the
    weights and needs no learnable-scale op at export.
    """

    def __init__(self, low: float, high: float, momentum: float = 0.05):
        super().__init__()
        self.register_buffer("low", torch.tensor(float(low)))
        self.register_buffer("high", torch.tensor(float(high)))
        self.momentum = momentum
        self.observing = True
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.observing:
            with torch.no_grad():
                self.low.lerp_(x.min().clamp_max(0.0), self.momentum)
                self.high.lerp_(x.max().clamp_min(0.0), self.momentum)
        if not self.enabled:
            return x
        scale, zero_point = self.qparams()
        return fake_quant(x, scale, zero_point, 0, 255)

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.low.clamp_max(0.0), self.high.clamp_min(0.0)
        scale = ((high - low) / 255.0).clamp_min(1e-8)
        zero_point = torch.clamp(torch.round(-low / scale), 0, 255)
        return scale, zero_point

    def range(self) -> list[float]:
        return [float(self.low), float(self.high)]
