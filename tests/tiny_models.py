"""Small models the tests build from code (importable as `tiny_models:NAME` specs)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class TinyResNet(nn.Module):
    """Residual CNN for 8x8 digits: stem, two residual blocks, a strided conv, classifier."""

    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = Block(width)
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.block2 = Block(2 * width)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.down(self.block1(self.stem(x))))
        return self.head(x.mean((2, 3)))


def resnet_tiny() -> nn.Module:
    torch.manual_seed(0)
    return TinyResNet()


def resnet_tiny_student() -> nn.Module:
    """Half the width of resnet_tiny: about a quarter of its parameters."""
    torch.manual_seed(1)
    return TinyResNet(width=8)


class ShiftedTinyResNet(TinyResNet):
    """TinyResNet whose class scores are rolled by one: loads TinyResNet weights, answers wrongly on purpose."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(super().forward(x), 1, dims=-1)


def resnet_tiny_shifted() -> nn.Module:
    torch.manual_seed(0)
    return ShiftedTinyResNet()
