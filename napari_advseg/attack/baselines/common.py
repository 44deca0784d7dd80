"""What every baseline attack shares: the result type, input checks and per-slice helpers.

All attacks work slice by slice: norms, budgets and losses are per slice
``(N,)`` and broadcast back onto ``(N, ...)`` tensors with :func:`per_slice`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_advseg.attack.losses import organ_mask, slice_organ_ce, slice_organ_softmin

__all__ = [
    "AttackResult",
    "attack_mask",
    "check_inputs",
    "per_slice",
    "per_slice_masked_ce",
    "slice_norms",
    "sync_device",
]


@dataclass
class AttackResult:
    """One batch of adversarial slices from a baseline attack.

    Attributes
    ----------
    adversarial : torch.Tensor
        ``(N, 1, H, W)`` the adversarial slices, normalised intensity units.
    displacement : torch.Tensor
        ``(N, 2, H, W)`` pixels (dy, dx); zeros for intensity-only attacks.
    bias : torch.Tensor
        ``(N, 1, H, W)`` normalised units: the additive bias field, or for
        intensity-only attacks the additive perturbation ``x_adv - x`` itself.
    warped_labels : torch.Tensor
        ``(N, H, W)`` the reference that moves with the anatomy,
        ``warp_labels(y, displacement)`` (``y`` itself for intensity attacks);
        same integer dtype as ``y``.
    seconds : float
        Wall-clock time of the attack for the whole batch, seconds.
    """

    adversarial: torch.Tensor
    displacement: torch.Tensor
    bias: torch.Tensor
    warped_labels: torch.Tensor
    seconds: float


def check_inputs(x: torch.Tensor, y: torch.Tensor, rho: float) -> None:
    """Refuse (ValueError) a batch other than ``x`` (N, 1, H, W), integer ``y`` (N, H, W) and finite ``rho >= 0``."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"x must be (N, 1, H, W), got {tuple(x.shape)}")
    if y.shape != (x.shape[0], x.shape[2], x.shape[3]):
        raise ValueError(f"y must be (N, H, W) = {(x.shape[0], x.shape[2], x.shape[3])}, got {tuple(y.shape)}")
    if y.is_floating_point():
        raise ValueError("y must be an integer label map")
    if not (math.isfinite(rho) and rho >= 0):
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")


def sync_device(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def slice_norms(t: torch.Tensor) -> torch.Tensor:
    """Per-slice L2 norm over every axis but the first, shape (N,)."""
    return t.reshape(t.shape[0], -1).norm(dim=1)


def per_slice(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape an (N,) tensor to broadcast against ``like`` (N, ...)."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def attack_mask(labels: torch.Tensor, organ_ids: Sequence[int] | None, dilation: int) -> torch.Tensor:
    """``organ_mask`` (float 0/1, (N, H, W)), with every pixel used for slices where it is empty."""
    mask = organ_mask(labels, organ_ids, dilation)
    empty = mask.reshape(mask.shape[0], -1).sum(dim=1) == 0
    if empty.any():
        mask = torch.where(per_slice(empty, mask), torch.ones_like(mask), mask)
    return mask


def per_slice_organ_ce(logits: torch.Tensor, labels: torch.Tensor, organ_ids: Sequence[int] | None, dilation: int,
                       cap: float, temperature: float | None = None) -> torch.Tensor:
    """Eq. 5 organ by organ, each capped at ``cap``, averaged over the organs present: shape (N,).

    Per slice, ``mean_k min(L_mce,k, cap)`` over the organs ``k`` in
    ``labels`` (``organ_ids``, or every label > 0), each with its own dilated
    mask. An organ whose cross-entropy passed ``cap`` adds no gradient, so an
    ascent on it moves on to the organs still intact instead of driving a
    large organ further (the pooled Eq. 5 weighs organs by their pixels).
    ``temperature``: the soft minimum over the organs instead of their mean
    (:func:`~napari_advseg.attack.losses.slice_organ_softmin`), so the ascent
    goes to each slice's least attacked organs. A slice with no organ gets the
    pooled CE over all its pixels.
    """
    ids = [int(k) for k in (organ_ids if organ_ids is not None else torch.unique(labels).tolist()) if int(k) > 0]
    if temperature is None:
        ce, present = slice_organ_ce(logits, labels, ids, dilation)
        count = present.sum(dim=1)
        total = torch.where(present, ce.clamp(max=cap), torch.zeros_like(ce)).sum(dim=1)
        value, rows = total / count.clamp_min(1), count > 0
    else:
        value, rows = slice_organ_softmin(logits, labels, ids, dilation, cap, temperature)
    if not bool(rows.all()):  # a slice without organs: the CE over all its pixels
        pooled = F.cross_entropy(logits, labels.to(logits.device).long(), reduction="none").flatten(1).mean(dim=1)
        value = torch.where(rows, value, pooled)
    return value


def per_slice_masked_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 5 for each slice separately, shape (N,): ``sum_i M_i w_i CE_i / sum_i M_i``.

    ``weights`` (N, H, W) optionally reweights the pixels (SegPGD); the
    normaliser is the mask alone. A slice with an empty mask gives 0.
    """
    labels = labels.to(logits.device).long()
    mask = mask.to(logits.device)
    per_pixel = F.cross_entropy(logits, labels, reduction="none")
    if weights is not None:
        per_pixel = per_pixel * weights
    total = (per_pixel * mask).reshape(mask.shape[0], -1).sum(dim=1)
    return total / mask.reshape(mask.shape[0], -1).sum(dim=1).clamp_min(1.0)
