"""A user's own architecture for 8×8 digit images (``benchmarks/bench_own_model.py``): two
3×3 convolutions, a max-pool and two dense layers, on the flat rows miaudit feeds a module."""

from __future__ import annotations

import torch
from torch import nn


class DigitNet(nn.Module):
    def __init__(self, n_features: int, n_classes: int, channels: int = 16, hidden: int = 128):
        super().__init__()
        self.side = round(n_features**0.5)
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 2 * channels * (self.side // 2) ** 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.view(-1, 1, self.side, self.side)))


def build(n_features: int, n_classes: int, **params: int) -> nn.Module:
    return DigitNet(n_features, n_classes, **params)
