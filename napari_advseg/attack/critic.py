"""The WGAN critic D of the attack: it scores how much a slice looks like a clean one."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["Critic"]


class Critic(nn.Module):
    """The Wasserstein critic D: a slice ``(N, 1, H, W)`` -> a score ``(N,)``.

    No batch normalisation (the gradient penalty is per sample); any size.
    """

    def __init__(self, base: int = 16, levels: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        ch = 1
        for level in range(levels):
            out = base * 2 ** level
            layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            ch = out
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3))).squeeze(1)
