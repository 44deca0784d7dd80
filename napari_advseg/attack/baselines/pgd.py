"""Intensity-only baselines: PGD-L2 and SegPGD.

The perturbation is projected on the L2 ball of radius ``rho * ||x_n||_2``
per slice and finally put on its surface, so rho is exactly the one asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from napari_advseg.attack.baselines.common import (
    AttackResult,
    attack_mask,
    check_inputs,
    per_slice,
    per_slice_masked_ce,
    slice_norms,
    sync_device,
)
from napari_advseg.attack.fields import acting_bias, apply_fields

__all__ = [
    "pgd_l2",
    "segpgd",
    "segpgd_lambda",
]


def _unit(t: torch.Tensor) -> torch.Tensor:
    """Each slice of ``t`` divided by its L2 norm (zero slices stay zero)."""
    return t / per_slice(slice_norms(t).clamp_min(1e-12), t)


def _project_ball(delta: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Project each slice of ``delta`` on the L2 ball of its ``radius`` (N,)."""
    factor = (radius / slice_norms(delta).clamp_min(1e-12)).clamp(max=1.0)
    return delta * per_slice(factor, delta)


def segpgd_lambda(t: int, steps: int) -> float:
    """SegPGD's weight of the wrongly classified pixels at step ``t`` of ``steps`` (t = 1..T).

    ``lambda_t = (t - 1) / (2 T)``: 0 at the first step, rising linearly to
    ``(T - 1) / (2 T) < 1/2`` at the last.
    """
    if not 1 <= t <= steps:
        raise ValueError(f"t must be in 1..{steps}, got {t}")
    return (t - 1) / (2.0 * steps)


def _intensity_pgd(x: torch.Tensor, y: torch.Tensor, target, rho: float, steps: int, rng: torch.Generator,
                   step_size: float | None, organ_ids: Sequence[int] | None, mask_dilation: int,
                   weighting: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None],
                   input_range: tuple[float, float] | None = None) -> AttackResult:
    """Shared PGD-L2 loop; ``weighting(t, logits, labels)`` gives per-pixel weights or None.

    ``input_range``: a window target's (see :func:`pgd_l2`): the perturbation
    is kept off the pixels at a bound and the image clipped to the range.
    """
    check_inputs(x, y, rho)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    sync_device(x.device)
    start = time.perf_counter()
    radius = rho * slice_norms(x)                                   # (N,), normalised units
    alpha = (2.5 / steps) if step_size is None else float(step_size)  # fraction of the radius per step
    mask = attack_mask(y, organ_ids, mask_dilation)

    def image(d: torch.Tensor) -> torch.Tensor:  # the perturbation acts as a bias does (a window's bounds kept)
        return apply_fields(x, None, d, input_range=input_range)

    with torch.no_grad():
        noise = torch.randn(x.shape, generator=rng).to(x.device, x.dtype)
        direction = _unit(acting_bias(x, noise, input_range))
        fraction = torch.rand(x.shape[0], generator=rng).to(x.device, x.dtype)
        delta = direction * per_slice(radius * fraction, x)
    for t in range(1, steps + 1):
        delta = delta.detach().requires_grad_(True)
        logits = target(image(delta))
        loss = per_slice_masked_ce(logits, y, mask, weighting(t, logits.detach(), y))
        (grad,) = torch.autograd.grad(loss.sum(), delta)  # zero at the pixels a window holds at a bound
        with torch.no_grad():
            delta = _project_ball(delta + per_slice(alpha * radius, x) * _unit(grad), radius)
    with torch.no_grad():
        # Compare at equal rho: a final iterate strictly inside the ball is put on its surface.
        delta = _unit(delta) * per_slice(radius, delta)
        adversarial = image(delta)
        delta = adversarial - x
    sync_device(x.device)
    return AttackResult(adversarial, torch.zeros_like(x).expand(-1, 2, -1, -1).clone(), delta, y.clone(),
                        time.perf_counter() - start)


def pgd_l2(x: torch.Tensor, y: torch.Tensor, target, rho: float, steps: int = 20,
           rng: torch.Generator | None = None, step_size: float | None = None,
           organ_ids: Sequence[int] | None = None, mask_dilation: int = 3,
           input_range: tuple[float, float] | None = None) -> AttackResult:
    """PGD with an L2 constraint on the intensities: ``||x_adv_n - x_n||_2 <= rho * ||x_n||_2``.

    Random start inside the ball (a uniform random direction at a uniform
    random fraction of the radius), then ``steps`` normalised-gradient ascent
    steps ``delta += step_size * r_n * g / ||g||`` each followed by projection
    on the ball. The result is finally put on the ball's surface, so rho is
    exactly the requested value.

    The loss is Eq. 5 per slice: the cross-entropy against ``y`` averaged over
    the organ mask ``M = organ_mask(y, organ_ids, mask_dilation)`` (every
    pixel for slices where the mask is empty). No displacement: the labels do
    not move.

    Parameters
    ----------
    x : (N, 1, H, W) float tensor
        Clean slices, normalised intensity units.
    y : (N, H, W) integer tensor
        Reference labels.
    target : napari_advseg.models.target.Target or callable
        Frozen network, ``target(x)`` -> logits ``(N, C, H, W)``.
    rho : float
        Perceptibility per slice (Eq. 7, dimensionless): the radius is
        ``r_n = rho * ||x_n||_2`` in normalised units.
    steps : int
        Gradient steps; each is one forward and backward pass.
    rng : torch.Generator or None
        Source of the random start (a fresh unseeded generator if None).
    step_size : float or None
        Step length as a fraction of the radius; default ``2.5 / steps``.
    organ_ids : sequence of int or None
        Label values whose dilated masks form M; None means every label > 0.
    mask_dilation : int
        Pixels by which the organ mask is dilated.
    input_range : (low, high) or None
        A window target's input range, normalised units: the perturbation
        acts in HU before the target's clip, as the fields do
        (:func:`~napari_advseg.attack.fields.apply_fields`), so it is kept
        off the pixels at a bound (air, fat or bone beyond the window) and
        the image is clipped to the range. None: everywhere, no clipping.

    Returns
    -------
    AttackResult
        ``bias`` holds the perturbation ``x_adv - x``; ``displacement`` zeros;
        ``warped_labels`` is ``y``.
    """
    rng = torch.Generator() if rng is None else rng
    return _intensity_pgd(x, y, target, rho, steps, rng, step_size, organ_ids, mask_dilation,
                          lambda t, logits, labels: None, input_range)


def segpgd(x: torch.Tensor, y: torch.Tensor, target, rho: float, steps: int = 20,
           rng: torch.Generator | None = None, step_size: float | None = None,
           organ_ids: Sequence[int] | None = None, mask_dilation: int = 3,
           input_range: tuple[float, float] | None = None) -> AttackResult:
    """SegPGD (Gu et al., ECCV 2022) with an L2 constraint, at perceptibility ``rho``.

    Plain PGD on a segmentation network spends its effort on pixels that are
    already misclassified, whose cross-entropy keeps growing, while correctly
    classified pixels hold out. SegPGD splits the per-pixel cross-entropy at
    each step by the current prediction,

    ``L_t = (1 - lambda_t) * CE(correct pixels) + lambda_t * CE(wrong pixels)``,
    with ``lambda_t = (t - 1) / (2 T)`` for ``t = 1..T``

    (:func:`segpgd_lambda`): the first steps attack only the correctly
    classified pixels; the weight of the wrong ones rises to just under 1/2 so
    that they are not flipped back. Both sums are normalised by the same count
    (the mask's pixels), as in the paper.

    Differences from the paper: an L2 ball of radius ``rho * ||x_n||_2`` with
    normalised-gradient steps instead of an L-infinity ball with signed steps,
    and the loss restricted to the organ mask as for :func:`pgd_l2`. Everything
    else (random start, projection, final rescaling to the surface, a window
    target's ``input_range``) is as in
    :func:`pgd_l2`, whose parameters this takes.

    Returns
    -------
    AttackResult
        ``bias`` holds the perturbation ``x_adv - x``; ``displacement`` zeros;
        ``warped_labels`` is ``y``.
    """
    rng = torch.Generator() if rng is None else rng

    def weighting(t: int, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lam = segpgd_lambda(t, steps)
        correct = logits.argmax(dim=1) == labels.to(logits.device).long()
        return torch.where(correct, 1.0 - lam, lam).to(logits.dtype)

    return _intensity_pgd(x, y, target, rho, steps, rng, step_size, organ_ids, mask_dilation, weighting,
                          input_range)
