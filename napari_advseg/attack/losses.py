"""The losses of the attack: Eq. 3 (WGAN), Eq. 4 (attack), Eq. 5 (masked CE), KL."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from napari_advseg.attack.fields import dilate_mask


def organ_mask(labels: torch.Tensor, organ_ids: Sequence[int] | None, dilation: int) -> torch.Tensor:
    """The mask M of Eq. 5: pixels of the chosen organs, dilated by ``dilation`` pixels.

    Parameters
    ----------
    labels : (N, H, W) integer tensor (the warped reference ``y_adv``)
    organ_ids : label values to attack; None means every label > 0
    """
    if organ_ids is None:
        mask = labels > 0
    else:
        mask = torch.zeros_like(labels, dtype=torch.bool)
        for organ in organ_ids:
            mask |= labels == int(organ)
    return dilate_mask(mask, dilation).float()


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``L_mce = -sum_i M_i sum_c y[i,c] log p[i,c] / sum_i M_i`` (Eq. 5).

    Parameters
    ----------
    logits : (N, C, H, W) the target's output for ``x_adv``
    labels : (N, H, W) integer ``y_adv``
    mask : (N, H, W) float, 0/1
    Returns 0 when the mask is empty (nothing to attack in this batch).
    """
    per_pixel = F.cross_entropy(logits, labels.long(), reduction="none")
    weight = mask.sum()
    if weight.item() == 0:
        return per_pixel.sum() * 0.0
    return (per_pixel * mask).sum() / weight


def attack_loss(mce: torch.Tensor, gamma: float) -> torch.Tensor:
    """``L_atk = |gamma - L_mce|`` (Eq. 4)."""
    return (gamma - mce).abs()


def squared_attack_loss(mce: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(gamma - L_mce)^2 / (2 gamma)``: Eq. 4's distance squared, its pull proportional to the distance.

    At ``L_mce = 0`` its slope is Eq. 4's (-1); half-way to gamma, half of it.
    """
    return (gamma - mce).pow(2) / (2.0 * max(gamma, 1e-6))


def per_organ_attack_loss(logits: torch.Tensor, labels: torch.Tensor, organ_ids: Sequence[int], gamma: float,
                          dilation: int, squared: bool = False) -> torch.Tensor:
    """Mean over the organs present of ``|gamma - L_mce,k|``, each organ with its own dilated mask.

    The ``"organs"`` reduction of the attack loss: Eq. 4 applied per organ, so
    a large organ cannot meet gamma alone while small ones stay intact.
    ``squared``: :func:`squared_attack_loss` per organ instead (the
    ``"organs_squared"`` reduction), so the organs furthest from gamma pull
    hardest. Organs absent from ``labels`` are skipped; with none present it is
    the loss of an unattacked CE of 0, with no gradient.
    """
    distance = squared_attack_loss if squared else attack_loss
    terms = []
    for organ in organ_ids:
        mask = organ_mask(labels, [organ], dilation)
        if mask.sum().item() > 0:
            terms.append(distance(masked_cross_entropy(logits, labels, mask), gamma))
    if not terms:
        return logits.sum() * 0.0 + float(distance(torch.zeros(()), gamma))
    return torch.stack(terms).mean()


def slice_organ_ce(logits: torch.Tensor, labels: torch.Tensor, organ_ids: Sequence[int],
                   dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 for each organ in each slice: ``(ce, present)``, both (N, K) for the K ``organ_ids``.

    ``ce[n, k]``: the masked CE of slice ``n`` over organ ``k``'s dilated mask
    (0 where the organ is absent); ``present[n, k]``: whether that mask has a
    pixel. The per-slice organ terms of :func:`slice_organ_attack_loss` and
    of the baselines' capped loss are made from it.
    """
    labels = labels.to(logits.device).long()
    per_pixel = F.cross_entropy(logits, labels, reduction="none").flatten(1)
    ce, present = [], []
    for organ in organ_ids:
        mask = organ_mask(labels, [organ], dilation).flatten(1)
        pixels = mask.sum(dim=1)
        ce.append((per_pixel * mask).sum(dim=1) / pixels.clamp_min(1.0))
        present.append(pixels > 0)
    if not ce:
        empty = logits.new_zeros((logits.shape[0], 0))
        return empty, empty.bool()
    return torch.stack(ce, dim=1), torch.stack(present, dim=1)


def slice_organ_attack_loss(logits: torch.Tensor, labels: torch.Tensor, organ_ids: Sequence[int], gamma: float,
                            dilation: int) -> torch.Tensor:
    """Mean over the (slice, organ) pairs present of ``|gamma - L_mce,n,k|``: Eq. 4 per organ in each slice.

    The ``"slice_organs"`` reduction. Where :func:`per_organ_attack_loss`
    pools an organ's pixels over the batch (the slices where it is large
    weigh most), here every slice's every organ counts once: a kidney's
    small cross-section in one slice pulls as hard as the liver in the next.
    With none present it is the loss of an unattacked CE of 0, with no
    gradient.
    """
    ce, present = slice_organ_ce(logits, labels, organ_ids, dilation)
    if not present.any():
        return logits.sum() * 0.0 + float(attack_loss(torch.zeros(()), gamma))
    return attack_loss(ce[present], gamma).mean()


def slice_organ_softmin(logits: torch.Tensor, labels: torch.Tensor, organ_ids: Sequence[int], dilation: int,
                        cap: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each slice's soft minimum over its organs' masked CEs, each capped at ``cap``: ``(soft, rows)``, both (N,).

    ``soft[n] = -t log sum_k exp(-min(L_mce,n,k, cap) / t)`` over the organs
    ``k`` present in slice ``n`` (``t`` the ``temperature``; as ``t -> 0``,
    the smallest CE), so its gradient goes to the slice's least attacked
    organs and an organ past ``cap`` adds none. ``rows[n]``: whether slice
    ``n`` holds any organ (``soft`` is 0 where it does not).
    """
    ce, present = slice_organ_ce(logits, labels, organ_ids, dilation)
    rows = present.any(dim=1)
    if not rows.any():
        return logits.new_zeros(logits.shape[0]), rows
    capped = ce.clamp(max=cap)
    t = max(float(temperature), 1e-6)
    exponents = torch.where(present, -capped / t, torch.full_like(capped, -torch.finfo(capped.dtype).max / 4))
    soft = -t * torch.logsumexp(exponents, dim=1)
    return torch.where(rows, soft, torch.zeros_like(soft)), rows


def slice_softmin_attack_loss(logits: torch.Tensor, labels: torch.Tensor, organ_ids: Sequence[int], gamma: float,
                              dilation: int, temperature: float) -> torch.Tensor:
    """Mean over slices of ``gamma - softmin_k min(L_mce,n,k, gamma)``: each slice's least attacked organ pulls.

    The ``"slice_softmin"`` reduction (:func:`slice_organ_softmin` capped at
    gamma). Slices with no organ present are left out; with none present
    anywhere it is gamma, with no gradient.
    """
    soft, rows = slice_organ_softmin(logits, labels, organ_ids, dilation, gamma, temperature)
    if not rows.any():
        return logits.sum() * 0.0 + float(gamma)
    return (gamma - soft[rows]).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, sigma^2) || N(0, I))`` summed over latent numbers, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()


def critic_loss(score_adversarial: torch.Tensor, score_real: torch.Tensor) -> torch.Tensor:
    """``L_D = mean D(x_adv) - mean D(x)`` (Eq. 3)."""
    return score_adversarial.mean() - score_real.mean()


def realism_loss(score_adversarial: torch.Tensor) -> torch.Tensor:
    """``L_real = -mean D(x_adv)`` (Eq. 3)."""
    return -score_adversarial.mean()


def gradient_penalty(critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     mix: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: ``mean((||grad D(x_hat)||_2 - 1)^2)`` on ``x_hat = mix * real + (1 - mix) * fake``.

    ``mix`` is (N, 1, 1, 1) in [0, 1], drawn by the caller so that its random
    stream is the trainer's (exact resume).
    """
    x_hat = (mix * real + (1.0 - mix) * fake).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.reshape(grad.shape[0], -1).norm(dim=1) - 1.0).pow(2).mean()
