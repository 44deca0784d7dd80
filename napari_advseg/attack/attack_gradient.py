"""The attack terms' gradient at the target's input, rescaled per slice to a fixed sensitivity.

A generator learns to attack only through the gradient the frozen target
passes back to its input. Its size differs between networks by orders of
magnitude: a network trained to a sharp softmax, or with a smaller input
scale, passes back a gradient so small that the regularisers (norm,
smoothness, KL) win every step and the generator learns the identity, while
attacks that normalise their steps (per-image PGD and optimised fields) break
the same network at once. ``attack_gradient = "normalised"`` makes the
generator's attack signal as scale-free as theirs: the gradient reaching
slice ``n`` of the target's input, ``g_n``, is replaced by
``g_n * s / (N ||g_n|| ||x_n||)``, where ``s`` is ``attack_sensitivity``, ``N``
the batch and ``x_n`` the slice. ``||g_n|| ||x_n||`` is the loss change per
unit of rho, so ``s`` is the sensitivity every target then appears to have;
its direction is the target's own.
"""

from __future__ import annotations

import torch


class _Normalise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, sensitivity: float) -> torch.Tensor:
        ctx.sensitivity = sensitivity
        ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        n = grad.shape[0]
        shape = (n,) + (1,) * (grad.dim() - 1)
        grad_norm = grad.flatten(1).norm(dim=1)
        x_norm = x.detach().flatten(1).norm(dim=1).clamp_min(1e-12)
        factor = torch.where(grad_norm > 0, ctx.sensitivity / (n * x_norm * grad_norm.clamp_min(1e-30)),
                             torch.zeros_like(grad_norm))
        return grad * factor.view(shape), None


def normalise_gradient(x: torch.Tensor, sensitivity: float) -> torch.Tensor:
    """``x`` unchanged forward; backward, each slice's gradient rescaled to ``sensitivity / (N ||x_n||)``."""
    return _Normalise.apply(x, float(sensitivity))


def sensitivity(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per slice, ``N ||g_n|| ||x_n||``: the quantity :func:`normalise_gradient` sets (for probes and reports)."""
    return grad.shape[0] * grad.flatten(1).norm(dim=1) * x.flatten(1).norm(dim=1)
