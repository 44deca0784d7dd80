"""A stand-in for a volumetric (3D) target: a tiny network that mixes neighbouring slices.

Called on ``(D, 1, H, W)`` consecutive slices it treats D as z (a Conv3d over
the stack), so its prediction of a slice depends on the slices beside it, as
a 3D nnU-Net's or MONAI network's does; ``slab_depth`` is set on the Target.
Every call's number of slices is recorded in ``calls``.
"""

from __future__ import annotations

import torch
from torch import nn


class SlabNet(nn.Module):
    """(D, 1, H, W) -> (D, C, H, W) logits through 3D convolutions along the stack."""

    def __init__(self, n_classes: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.hidden = nn.Conv3d(1, 8, 3, padding=1)
        self.out = nn.Conv3d(8, n_classes, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * (0.5 if p.ndim > 1 else 0.2))
            self.hidden.weight[:, :, 1] *= 0.3  # the neighbours weigh more than the slice itself
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        volume = x.transpose(0, 1)[None]  # (1, 1, D, H, W)
        return self.out(torch.relu(self.hidden(volume)))[0].transpose(0, 1)


def slab_target(depth: int = 3, seed: int = 0):
    """A Target (z-score input, the six organ classes) around a :class:`SlabNet`, with ``slab_depth``."""
    from napari_advseg.models.target import make_target
    from napari_advseg.organs import ORGAN_CLASSES

    target = make_target(SlabNet(len(ORGAN_CLASSES), seed), device="cpu")
    target.slab_depth = depth
    target.model.calls.clear()
    return target
