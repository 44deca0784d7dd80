"""The target's gradient as a second input of G (``AttackConfig.guide = "gradient"``).

A generator that sees only the slice must guess where the frozen target is
sensitive; per-image attacks read it from the target's gradient. With
``guide "gradient"`` G's encoder reads, beside the slice, the gradient at the
clean slice of the target's cross-entropy against its own prediction over the
predicted organs (dilated by ``mask_dilation``), scaled per slice to unit
root-mean-square and clipped to +-``GUIDE_CLIP``. It costs one forward and
one backward pass of the target per slice, once: the guide does not depend
on the latent code. 2D targets only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_advseg.attack.losses import organ_mask

GUIDE_CLIP = 4.0
"""Largest magnitude of a guide pixel, in units of the slice's root-mean-square gradient."""


def target_guide(target, x: torch.Tensor, dilation: int, batch_size: int = 16) -> torch.Tensor:
    """The guide of slices ``x`` ``(N, 1, H, W)``: ``(N, 1, H, W)`` on ``x``'s device, no gradient."""
    rows = []
    for start in range(0, x.shape[0], batch_size):
        with torch.enable_grad():
            xi = x[start:start + batch_size].detach().clone().requires_grad_(True)
            logits = target(xi)
            predicted = logits.argmax(dim=1).detach()
            mask = organ_mask(predicted, None, dilation).float()
            ce = (F.cross_entropy(logits, predicted, reduction="none") * mask).sum()
            (grad,) = torch.autograd.grad(ce, xi)
        rms = grad.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-30).reshape(-1, 1, 1, 1)
        rows.append(torch.where(rms > 1e-30, grad / rms, torch.zeros_like(grad)).clamp(-GUIDE_CLIP, GUIDE_CLIP))
    return torch.cat(rows).to(x.device).detach()
