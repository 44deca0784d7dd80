"""Baseline attacks the generator is compared against, all at a fixed perceptibility rho.

Every attack works on a batch of normalised slices ``x`` ``(N, 1, H, W)`` with
integer reference labels ``y`` ``(N, H, W)`` and returns an
:class:`AttackResult`. Each one is scaled so that every slice's perceptibility
(Eq. 7, ``||x_adv_n - x_n||_2 / ||x_n||_2``, dimensionless) equals the
requested ``rho``, so the attacks can be compared at an equal budget:

``random_smooth_fields``
    What an augmentation library draws (cf. TorchIO's RandomElasticDeformation
    and RandomBiasField): Gaussian control-point displacements and bias on a
    coarse grid, upsampled bicubically. No target network involved.
``optimised_smooth_fields``
    The same smooth fields, optimised per image by gradient ascent on the
    masked cross-entropy of the frozen target (advchain-style).
``pgd_l2``
    Projected gradient descent (ascent) with an L2 constraint on the
    intensities alone.
``segpgd``
    SegPGD (Gu et al., ECCV 2022): PGD-L2 whose loss shifts its weight from
    correctly to wrongly classified pixels over the steps.

Fields are rescaled to the budget by bisection on a scalar multiplier (warping
is nonlinear in the displacement, so no closed form exists); intensity
perturbations are projected on the L2 ball of radius ``rho * ||x_n||_2``.

:data:`ATTACKS` maps names to callables with the uniform signature
``fn(x, y, target, rho, rng, **options)``; :func:`evaluate_baseline` gives a
report shaped like :func:`napari_advseg.evaluation.report.evaluate_attack`'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_advseg.evaluation.metrics import SUCCESS_DROP, OverlapCounter
from napari_advseg.evaluation.report import summarise_dice
from napari_advseg.attack.fields import apply_fields, fold_count, perceptibility_per_slice, upsample_field, warp_labels
from napari_advseg.attack.config import FIELD_MODES
from napari_advseg.attack.losses import organ_mask

__all__ = [
    "AttackResult",
    "ATTACKS",
    "random_smooth_fields",
    "optimised_smooth_fields",
    "pgd_l2",
    "segpgd",
    "segpgd_lambda",
    "scale_fields_to_rho",
    "generator_attack",
    "evaluate_baseline",
]

"""Which fields a field attack uses: both, the displacement alone or the bias alone."""

_RHO_TOLERANCE = 1e-4
"""Relative accuracy (dimensionless) the bisection aims for on each slice's rho."""


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


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _check_inputs(x: torch.Tensor, y: torch.Tensor, rho: float) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"x must be (N, 1, H, W), got {tuple(x.shape)}")
    if y.shape != (x.shape[0], x.shape[2], x.shape[3]):
        raise ValueError(f"y must be (N, H, W) = {(x.shape[0], x.shape[2], x.shape[3])}, got {tuple(y.shape)}")
    if y.is_floating_point():
        raise ValueError("y must be an integer label map")
    if not (math.isfinite(rho) and rho >= 0):
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _slice_norms(t: torch.Tensor) -> torch.Tensor:
    """Per-slice L2 norm over every axis but the first, shape (N,)."""
    return t.reshape(t.shape[0], -1).norm(dim=1)


def _per_slice(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape an (N,) tensor to broadcast against ``like`` (N, ...)."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def _coarse_size(size: tuple[int, int], spacing: int) -> tuple[int, int]:
    """Control points per axis so that with ``align_corners=True`` they lie ~``spacing`` pixels apart.

    At least 4 per axis, which the bicubic kernel needs to be more than linear.
    """
    if spacing < 1:
        raise ValueError(f"control_spacing must be >= 1 pixel, got {spacing}")
    return tuple(max(4, math.ceil((s - 1) / spacing) + 1) for s in size)  # type: ignore[return-value]


def _fields(coarse_phi: torch.Tensor | None, coarse_b: torch.Tensor | None,
            size: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    phi = None if coarse_phi is None else upsample_field(coarse_phi, size)
    bias = None if coarse_b is None else upsample_field(coarse_b, size)
    return phi, bias


def _measure(x: torch.Tensor, phi: torch.Tensor | None, bias: torch.Tensor | None,
             scale: torch.Tensor) -> torch.Tensor:
    """Per-slice rho of ``apply_fields(x, scale * phi, scale * bias)``; ``scale`` is (N,)."""
    s = scale.reshape(-1, 1, 1, 1).to(x.dtype)
    adv = apply_fields(x, None if phi is None else phi * s, None if bias is None else bias * s)
    return perceptibility_per_slice(adv, x)


@torch.no_grad()
def scale_fields_to_rho(x: torch.Tensor, phi: torch.Tensor | None, bias: torch.Tensor | None, rho: float,
                        max_iterations: int = 60) -> torch.Tensor:
    """The per-slice multiplier ``s`` with ``rho(apply_fields(x, s*phi, s*bias), x) = rho``.

    Bisection on each slice's measured perceptibility (Eq. 7), since warping is
    nonlinear in the displacement. A bracket is found by doubling or halving
    ``s`` from 1, then bisected (in log scale) until every slice's rho is within
    a relative ``1e-4`` of the target or ``max_iterations`` evaluations are used.

    Because the upsampling of control points is linear, the multiplier may be
    applied to the coarse control points instead of the full fields.

    Parameters
    ----------
    x : (N, 1, H, W) float tensor
        Clean slices, normalised units.
    phi : (N, 2, H, W) float tensor or None
        Displacement direction, pixels (dy, dx).
    bias : (N, 1, H, W) float tensor or None
        Additive bias direction, normalised units.
    rho : float
        Target perceptibility (dimensionless, >= 0).
    max_iterations : int
        Evaluations of the warp allowed for the bracket and for the bisection each.

    Returns
    -------
    torch.Tensor
        ``(N,)`` multipliers (>= 0). Zero where ``rho == 0``. Where the target
        cannot be reached (e.g. a displacement on a constant slice, or a zero
        field) the multiplier stops growing once the field would move pixels
        by more than the slice's size, and rho falls short there.
    """
    n = x.shape[0]
    ones = torch.ones(n, dtype=x.dtype, device=x.device)
    if rho == 0 or (phi is None and bias is None):
        return ones * 0.0
    # Largest sensible multiplier: displacements up to the slice size, or a bias 1e6 x the slice norm.
    cap = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    if phi is not None:
        peak = phi.abs().reshape(n, -1).amax(dim=1).clamp_min(1e-12)
        cap = torch.minimum(cap, max(x.shape[2], x.shape[3]) / peak)
    if bias is not None:
        size = _slice_norms(bias).clamp_min(1e-12)
        cap = torch.minimum(cap, 1e6 * _slice_norms(x).clamp_min(1e-8) / size)

    lo = torch.zeros_like(ones)
    hi = torch.minimum(ones, cap)
    r_hi = _measure(x, phi, bias, hi)
    best, best_err = hi.clone(), (r_hi - rho).abs()
    # Bracket: grow hi until it overshoots (or hits the cap); the last undershoot becomes lo.
    for _ in range(max_iterations):
        grow = (r_hi < rho) & (hi < cap)
        if not grow.any():
            break
        lo = torch.where(grow, hi, lo)
        hi = torch.where(grow, torch.minimum(hi * 2.0, cap), hi)
        r_hi = _measure(x, phi, bias, hi)
        err = (r_hi - rho).abs()
        better = err < best_err
        best, best_err = torch.where(better, hi, best), torch.where(better, err, best_err)
    # Shrink: where even lo = 0 < hi overshoots, halve hi to get a tight bracket [hi/2, hi].
    lo_known = lo > 0
    for _ in range(max_iterations):
        shrink = (~lo_known) & (r_hi > rho)
        if not shrink.any():
            break
        half = hi * 0.5
        r_half = _measure(x, phi, bias, half)
        under = shrink & (r_half <= rho)
        lo = torch.where(under, half, lo)
        lo_known = lo_known | under
        over = shrink & ~under
        hi = torch.where(over, half, hi)
        r_hi = torch.where(over, r_half, r_hi)
        err = (r_half - rho).abs()
        better = shrink & (err < best_err)
        best, best_err = torch.where(better, half, best), torch.where(better, err, best_err)
    # Bisection (geometric mean where the bracket is [lo > 0, hi]).
    reachable = r_hi >= rho
    for _ in range(max_iterations):
        if bool(((best_err <= _RHO_TOLERANCE * rho) | ~reachable).all()):
            break
        mid = torch.where(lo > 0, (lo * hi).sqrt(), 0.5 * hi)
        r_mid = _measure(x, phi, bias, mid)
        above = r_mid > rho
        hi = torch.where(reachable & above, mid, hi)
        lo = torch.where(reachable & ~above, mid, lo)
        err = (r_mid - rho).abs()
        better = reachable & (err < best_err)
        best, best_err = torch.where(better, mid, best), torch.where(better, err, best_err)
    return torch.where(reachable, best, hi)


def _attack_mask(labels: torch.Tensor, organ_ids: Sequence[int] | None, dilation: int) -> torch.Tensor:
    """``organ_mask`` (float 0/1, (N, H, W)), with every pixel used for slices where it is empty."""
    mask = organ_mask(labels, organ_ids, dilation)
    empty = mask.reshape(mask.shape[0], -1).sum(dim=1) == 0
    if empty.any():
        mask = torch.where(_per_slice(empty, mask), torch.ones_like(mask), mask)
    return mask


def _per_slice_masked_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
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


def _unit(t: torch.Tensor) -> torch.Tensor:
    """Each slice of ``t`` divided by its L2 norm (zero slices stay zero)."""
    return t / _per_slice(_slice_norms(t).clamp_min(1e-12), t)


def _project_ball(delta: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Project each slice of ``delta`` on the L2 ball of its ``radius`` (N,)."""
    factor = (radius / _slice_norms(delta).clamp_min(1e-12)).clamp(max=1.0)
    return delta * _per_slice(factor, delta)


def _check_fields(fields: str) -> None:
    if fields not in FIELD_MODES:
        raise ValueError(f"fields must be one of {FIELD_MODES}, got {fields!r}")


def _fit_field_pair(x: torch.Tensor, coarse_phi: torch.Tensor | None, coarse_b: torch.Tensor | None,
                    rho: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Scale coarse control points so each field alone gives ``rho / sqrt(k)`` (k = fields used),
    then both together exactly ``rho``. Returns the scaled coarse tensors."""
    size = (x.shape[2], x.shape[3])
    used = (coarse_phi is not None) + (coarse_b is not None)
    share = rho / math.sqrt(used)
    if used == 2:
        phi, bias = _fields(coarse_phi, coarse_b, size)
        coarse_phi = coarse_phi * _per_slice(scale_fields_to_rho(x, phi, None, share), coarse_phi)
        coarse_b = coarse_b * _per_slice(scale_fields_to_rho(x, None, bias, share), coarse_b)
    phi, bias = _fields(coarse_phi, coarse_b, size)
    s = scale_fields_to_rho(x, phi, bias, rho)
    return (None if coarse_phi is None else coarse_phi * _per_slice(s, coarse_phi),
            None if coarse_b is None else coarse_b * _per_slice(s, coarse_b))


def _field_result(x: torch.Tensor, y: torch.Tensor, coarse_phi: torch.Tensor | None,
                  coarse_b: torch.Tensor | None, seconds: float) -> AttackResult:
    size = (x.shape[2], x.shape[3])
    phi, bias = _fields(coarse_phi, coarse_b, size)
    phi = torch.zeros_like(x).expand(-1, 2, -1, -1).clone() if phi is None else phi
    bias = torch.zeros_like(x) if bias is None else bias
    adversarial = apply_fields(x, phi, bias)
    return AttackResult(adversarial.detach(), phi.detach(), bias.detach(), warp_labels(y, phi.detach()), seconds)


# --------------------------------------------------------------------------
# 1. random smooth fields
# --------------------------------------------------------------------------


@torch.no_grad()
def random_smooth_fields(x: torch.Tensor, y: torch.Tensor, rho: float, rng: torch.Generator,
                         control_spacing: int = 8, fields: str = "both") -> AttackResult:
    """Random smooth deformation and bias fields at perceptibility ``rho`` (augmentation baseline).

    Like an augmentation library's random elastic deformation plus random bias
    field: independent standard-normal values on a coarse control grid (one
    point about every ``control_spacing`` pixels, at least 4 per axis),
    upsampled bicubically to ``(H, W)``. Each field is first scaled alone to
    ``rho / sqrt(2)``, then both together (one common multiplier found by
    bisection) to exactly ``rho`` per slice, so they share the budget about
    evenly.

    Parameters
    ----------
    x : (N, 1, H, W) float tensor
        Clean slices, normalised intensity units.
    y : (N, H, W) integer tensor
        Reference labels.
    rho : float
        Perceptibility per slice (Eq. 7, dimensionless).
    rng : torch.Generator
        Source of the random draws (on the CPU); the same seed gives the same fields.
    control_spacing : int
        Pixels between control points.
    fields : {"both", "phi", "bias"}
        Both fields, the displacement alone or the bias alone. Both fields are
        always drawn, so ``"phi"`` uses the same displacement as ``"both"``.

    Returns
    -------
    AttackResult
    """
    _check_inputs(x, y, rho)
    _check_fields(fields)
    _sync(x.device)
    start = time.perf_counter()
    n = x.shape[0]
    gh, gw = _coarse_size((x.shape[2], x.shape[3]), control_spacing)
    coarse_phi = torch.randn(n, 2, gh, gw, generator=rng).to(x.device, x.dtype)
    coarse_b = torch.randn(n, 1, gh, gw, generator=rng).to(x.device, x.dtype)
    coarse_phi, coarse_b = _fit_field_pair(x, coarse_phi if fields != "bias" else None,
                                           coarse_b if fields != "phi" else None, rho)
    result = _field_result(x, y, coarse_phi, coarse_b, 0.0)
    _sync(x.device)
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------
# 2. optimised smooth fields
# --------------------------------------------------------------------------


def optimised_smooth_fields(x: torch.Tensor, y: torch.Tensor, target, rho: float, steps: int,
                            rng: torch.Generator, control_spacing: int = 8, lr: float = 0.5,
                            organ_ids: Sequence[int] | None = None, mask_dilation: int = 3,
                            fields: str = "both", init_fraction: float = 0.1) -> AttackResult:
    """Smooth fields optimised per image to raise the target's masked cross-entropy, at ``rho``.

    advchain-style projected gradient ascent on control points:

    1. Draw standard-normal control points (as :func:`random_smooth_fields`)
       and scale them to the budget; the per-slice norms ``R_phi``, ``R_b`` of
       the coarse fields that alone would reach ``rho`` define dimensionless
       coordinates ``u = (c_phi / R_phi, c_b / R_b)``. Start at
       ``init_fraction`` of the budget (a small random field).
    2. Each step (one forward and backward pass of the target): the loss is
       Eq. 5 per slice, ``L_n = masked CE(f(x_adv), y_adv, M)`` with
       ``y_adv = warp_labels(y, phi)`` and ``M = organ_mask(y_adv, organ_ids,
       mask_dilation)`` (all pixels where the mask is empty). The step is
       ``u += lr * grad_u L / ||grad_u L||`` (joint L2 normalisation over both
       fields per slice, so the budget can shift to the more effective field),
       then both fields are rescaled together onto ``rho`` by bisection.
    3. The iterate with the highest loss (all on the budget) is kept per slice;
       the last one costs one extra forward pass.

    The step size is constant and the only random draws come first, so the
    run with more steps continues the one with fewer: the kept loss never
    decreases with ``steps`` for a fixed seed.

    Parameters
    ----------
    x : (N, 1, H, W) float tensor
        Clean slices, normalised intensity units.
    y : (N, H, W) integer tensor
        Reference labels.
    target : napari_advseg.models.target.Target or callable
        Frozen network, ``target(x)`` -> logits ``(N, C, H, W)``.
    rho : float
        Perceptibility per slice (Eq. 7, dimensionless).
    steps : int
        Gradient steps (>= 1); the harness uses 1, 5 and 20.
    rng : torch.Generator
        Source of the random initialisation.
    control_spacing : int
        Pixels between control points.
    lr : float
        Step length in the dimensionless coordinates ``u`` (1 = a whole
        field's budget).
    organ_ids : sequence of int or None
        Label values whose dilated masks form M; None means every label > 0.
    mask_dilation : int
        Pixels by which the organ mask is dilated.
    fields : {"both", "phi", "bias"}
        Which fields are optimised.
    init_fraction : float
        Size of the random start as a fraction of the budget.

    Returns
    -------
    AttackResult
    """
    _check_inputs(x, y, rho)
    _check_fields(fields)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    _sync(x.device)
    start = time.perf_counter()
    n = x.shape[0]
    size = (x.shape[2], x.shape[3])
    gh, gw = _coarse_size(size, control_spacing)
    with torch.no_grad():
        draw_phi = torch.randn(n, 2, gh, gw, generator=rng).to(x.device, x.dtype)
        draw_b = torch.randn(n, 1, gh, gw, generator=rng).to(x.device, x.dtype)
        units: list[torch.Tensor] = []   # R per used field, (N,)
        init: list[torch.Tensor] = []
        for name, draw in (("phi", draw_phi), ("bias", draw_b)):
            if fields in (name, "both"):
                phi, bias = _fields(draw if name == "phi" else None, draw if name == "bias" else None, size)
                s = scale_fields_to_rho(x, phi, bias, rho)
                units.append(_slice_norms(draw) * s)
                init.append(draw * _per_slice(s, draw))
        if fields == "both":
            # Even share of the budget at the start, like the random baseline, then shrunk.
            phi, bias = _fields(init[0], init[1], size)
            s = scale_fields_to_rho(x, phi, bias, rho)
            init = [c * _per_slice(s, c) for c in init]
        coords = [c * init_fraction / _per_slice(r.clamp_min(1e-12), c) for c, r in zip(init, units)]

    def to_coarse(us: list[torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        cs = [u * _per_slice(r, u) for u, r in zip(us, units)]
        if fields == "both":
            return cs[0], cs[1]
        return (cs[0], None) if fields == "phi" else (None, cs[0])

    def loss_of(us: list[torch.Tensor]) -> torch.Tensor:
        phi, bias = _fields(*to_coarse(us), size)
        x_adv = apply_fields(x, phi, bias)
        y_adv = y if phi is None else warp_labels(y, phi.detach())
        mask = _attack_mask(y_adv, organ_ids, mask_dilation)
        return _per_slice_masked_ce(target(x_adv), y_adv, mask)

    def rescale(us: list[torch.Tensor]) -> list[torch.Tensor]:
        cp, cb = to_coarse(us)
        phi, bias = _fields(cp, cb, size)
        s = scale_fields_to_rho(x, phi, bias, rho)
        return [u * _per_slice(s, u) for u in us]

    best = [c.clone() for c in coords]
    best_loss = torch.full((n,), -float("inf"), device=x.device)
    for step in range(steps):
        current = [c.detach().requires_grad_(True) for c in coords]
        loss = loss_of(current)
        grads = torch.autograd.grad(loss.sum(), current)
        with torch.no_grad():
            if step > 0:   # the starting point is not on the budget; later iterates are
                better = loss.detach().to(x.device) > best_loss
                best_loss = torch.where(better, loss.detach().to(x.device), best_loss)
                best = [torch.where(_per_slice(better, b), c.detach(), b) for b, c in zip(best, current)]
            total = torch.stack([_slice_norms(g) ** 2 for g in grads]).sum(dim=0).sqrt().clamp_min(1e-12)
            coords = rescale([c.detach() + lr * g / _per_slice(total, g) for c, g in zip(current, grads)])
    with torch.no_grad():
        loss = loss_of(coords).to(x.device)
        better = loss > best_loss
        best = [torch.where(_per_slice(better, b), c, b) for b, c in zip(best, coords)]
        result = _field_result(x, y, *to_coarse(best), 0.0)
    _sync(x.device)
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------
# 3. PGD-L2 and 4. SegPGD
# --------------------------------------------------------------------------


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
                   weighting: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None]) -> AttackResult:
    """Shared PGD-L2 loop; ``weighting(t, logits, labels)`` gives per-pixel weights or None."""
    _check_inputs(x, y, rho)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    _sync(x.device)
    start = time.perf_counter()
    radius = rho * _slice_norms(x)                                   # (N,), normalised units
    alpha = (2.5 / steps) if step_size is None else float(step_size)  # fraction of the radius per step
    mask = _attack_mask(y, organ_ids, mask_dilation)
    with torch.no_grad():
        direction = _unit(torch.randn(x.shape, generator=rng).to(x.device, x.dtype))
        fraction = torch.rand(x.shape[0], generator=rng).to(x.device, x.dtype)
        delta = direction * _per_slice(radius * fraction, x)
    for t in range(1, steps + 1):
        delta = delta.detach().requires_grad_(True)
        logits = target(x + delta)
        loss = _per_slice_masked_ce(logits, y, mask, weighting(t, logits.detach(), y))
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            delta = _project_ball(delta + _per_slice(alpha * radius, x) * _unit(grad), radius)
    with torch.no_grad():
        # Compare at equal rho: a final iterate strictly inside the ball is put on its surface.
        delta = _unit(delta) * _per_slice(radius, delta)
        adversarial = x + delta
    _sync(x.device)
    return AttackResult(adversarial, torch.zeros_like(x).expand(-1, 2, -1, -1).clone(), delta, y.clone(),
                        time.perf_counter() - start)


def pgd_l2(x: torch.Tensor, y: torch.Tensor, target, rho: float, steps: int = 20,
           rng: torch.Generator | None = None, step_size: float | None = None,
           organ_ids: Sequence[int] | None = None, mask_dilation: int = 3) -> AttackResult:
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

    Returns
    -------
    AttackResult
        ``bias`` holds the perturbation ``x_adv - x``; ``displacement`` zeros;
        ``warped_labels`` is ``y``.
    """
    rng = torch.Generator() if rng is None else rng
    return _intensity_pgd(x, y, target, rho, steps, rng, step_size, organ_ids, mask_dilation,
                          lambda t, logits, labels: None)


def segpgd(x: torch.Tensor, y: torch.Tensor, target, rho: float, steps: int = 20,
           rng: torch.Generator | None = None, step_size: float | None = None,
           organ_ids: Sequence[int] | None = None, mask_dilation: int = 3) -> AttackResult:
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
    else (random start, projection, final rescaling to the surface) is as in
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

    return _intensity_pgd(x, y, target, rho, steps, rng, step_size, organ_ids, mask_dilation, weighting)


# --------------------------------------------------------------------------
# 5. the registry
# --------------------------------------------------------------------------


def _random_fields_attack(x, y, target, rho, rng, **options) -> AttackResult:
    """:func:`random_smooth_fields` with the uniform signature (``target`` and ``organ_ids`` ignored)."""
    options.pop("organ_ids", None)
    options.pop("mask_dilation", None)
    return random_smooth_fields(x, y, rho, rng, **options)


def _optimised_attack(steps: int) -> Callable[..., AttackResult]:
    def attack(x, y, target, rho, rng, **options) -> AttackResult:
        return optimised_smooth_fields(x, y, target, rho, options.pop("steps", steps), rng, **options)

    attack.__doc__ = f":func:`optimised_smooth_fields` with {steps} step(s) by default."
    return attack


def _pgd_attack(x, y, target, rho, rng, **options) -> AttackResult:
    return pgd_l2(x, y, target, rho, rng=rng, **options)


def _segpgd_attack(x, y, target, rho, rng, **options) -> AttackResult:
    return segpgd(x, y, target, rho, rng=rng, **options)


@torch.no_grad()
def generator_attack(x: torch.Tensor, y: torch.Tensor, target, rho: float | None, rng: torch.Generator,
                     *, generator, config, temperature: float = 1.0, **options) -> AttackResult:
    """The trained generator as a peer: one forward pass with random latent deviates.

    With ``rho`` None the fields are used as G makes them (its own rho); with a
    number, both fields are multiplied by one per-slice factor (found by
    :func:`scale_fields_to_rho`, as for the other field attacks) so the slice's
    perceptibility is exactly ``rho``: the same generator used at a set
    strength. ``target`` and the other options are not used (G never queries
    the target at inference); ``seconds`` counts the forward pass and the scaling.
    """
    options.pop("organ_ids", None)
    options.pop("mask_dilation", None)
    if options:
        raise TypeError(f"generator_attack got unexpected options {sorted(options)}")
    if rho is not None:
        _check_inputs(x, y, rho)
        if config.bias_mode != "additive":
            raise ValueError("scaling to a rho is defined for the additive bias mode only")
    device = next(generator.parameters()).device
    _sync(x.device)
    start = time.perf_counter()
    n = x.shape[0]
    eps_phi = torch.randn(n, config.latent_dim, generator=rng)
    eps_b = torch.randn(n, config.latent_dim, generator=rng)
    out = generator(x.to(device), eps_phi.to(device), eps_b.to(device), temperature)
    phi, bias = out.displacement.to(x.device), out.bias.to(x.device)  # G gives zeros for a field it does not use
    if rho is not None:
        s = scale_fields_to_rho(x, phi if config.use_phi else None, bias if config.use_bias else None, rho)
        phi, bias = phi * _per_slice(s, phi), bias * _per_slice(s, bias)
    adversarial = apply_fields(x, phi, bias, config.bias_mode)
    warped = warp_labels(y, phi) if config.use_phi else y
    _sync(x.device)
    return AttackResult(adversarial, phi, bias, warped, time.perf_counter() - start)


ATTACKS: dict[str, Callable[..., AttackResult]] = {
    "random_fields": _random_fields_attack,
    "optimised_fields_1": _optimised_attack(1),
    "optimised_fields_5": _optimised_attack(5),
    "optimised_fields_20": _optimised_attack(20),
    "pgd_l2": _pgd_attack,
    "segpgd": _segpgd_attack,
}
"""Name -> ``fn(x, y, target, rho, rng, **options)`` returning an :class:`AttackResult`.

``options`` are the keyword arguments of the underlying function
(``organ_ids`` is accepted, and ignored, by ``"random_fields"``).
"""


# --------------------------------------------------------------------------
# 6. evaluation
# --------------------------------------------------------------------------


def slice_successes(pred_clean: torch.Tensor, reference: torch.Tensor, pred_adv: torch.Tensor,
                    warped_reference: torch.Tensor, n_classes: int) -> tuple[int, int]:
    """(successes, trials) over the (slice, organ) pairs of a batch.

    A trial is an organ present in a slice's reference whose clean Dice on that
    slice is above 0; it succeeds when the slice's adversarial Dice (against the
    warped reference) is at most 70 % of the clean one, the 30 % line of Table 1
    applied slice by slice.
    """
    def dice(ref: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Per-slice Dice of two (N, H, W) masks (0 where both are empty)."""
        ref, pred = ref.flatten(1), pred.flatten(1)
        return 2 * (ref & pred).sum(1).double() / (ref.sum(1) + pred.sum(1)).double().clamp_min(1)

    successes = trials = 0
    for c in range(1, n_classes):
        clean = dice(reference == c, pred_clean == c)
        adv = dice(warped_reference == c, pred_adv == c)
        counted = (reference == c).flatten(1).any(1) & (clean > 0)
        trials += int(counted.sum())
        successes += int((counted & (adv <= (1.0 - SUCCESS_DROP) * clean)).sum())
    return successes, trials


def evaluate_baseline(name: str | Callable[..., AttackResult], target, volumes: Sequence[tuple[Any, Any]],
                      rho: float | None, samples: int = 1, seed: int = 0, batch_size: int = 8,
                      organ_ids: Sequence[int] | None = None, *, options: dict[str, Any] | None = None,
                      progress=None) -> dict[str, Any]:
    """The Table-1 figures of one baseline attack, shaped like ``evaluate_attack``'s report.

    Dice per organ per volume over all its slices, averaged over volumes;
    clean Dice of ``f(x)`` against ``y``, adversarial Dice of ``f(x_adv)``
    against the warped reference ``warp_labels(y, phi)`` (``y`` for intensity
    attacks); organs absent from a volume's reference are left out of its
    average. Slices are moved to ``target.device``.

    Parameters
    ----------
    name : str or callable
        A key of :data:`ATTACKS`, or an attack with their signature (e.g.
        :func:`generator_attack` with its generator bound); its ``__name__``
        names it in the report.
    target : napari_advseg.models.target.Target
        Frozen network (needs ``class_names`` and ``device``).
    volumes : sequence of (images (N, H, W) normalised, labels (N, H, W) integer)
        Each entry is one volume's test slices with their reference labels.
    rho : float or None
        Perceptibility per slice (Eq. 7, dimensionless); None only for attacks
        that choose their own (:func:`generator_attack`).
    samples : int
        Attacks per slice (different random draws from one stream seeded by ``seed``).
    seed : int
        Seed of the ``torch.Generator`` every random draw comes from.
    batch_size : int
        Slices attacked together.
    organ_ids : sequence of int or None
        Label values attacked (passed to the attack); None means every label > 0.
    options : dict, optional
        Further keyword arguments of the attack (e.g. ``control_spacing``).
    progress : callable(int) or None
        Called with the number of slices done after each batch.

    Returns
    -------
    dict
        The keys of ``evaluate_attack``'s report (``organs``, ``absent_organs``,
        ``rho``, ``fold_fraction``, ``mean_drop``, ``all_succeed``, ``config``,
        ``samples``, ``temperature`` (None: no latent sampling), ``seed``,
        ``volumes``, ``slices``), with ``config`` describing the baseline, plus
        ``"seconds_per_slice"``: mean wall-clock time of the attack per slice
        (seconds; model forward passes for the Dice excluded), and
        ``"slice_success_rate"``: the fraction of (slice, organ) pairs whose
        Dice on that slice drops by >= 30 % (:func:`slice_successes`).
    """
    if callable(name):
        attack = name
        name = getattr(attack, "__name__", None) or getattr(getattr(attack, "func", None), "__name__", "attack")
    elif name in ATTACKS:
        attack = ATTACKS[name]
    else:
        raise ValueError(f"unknown baseline {name!r}: expected one of {', '.join(ATTACKS)}")
    if samples < 1 or batch_size < 1:
        raise ValueError("samples and batch_size must be >= 1")
    options = dict(options or {})
    class_names = list(target.class_names)
    n_classes = len(class_names)
    device = torch.device(getattr(target, "device", "cpu"))
    rng = torch.Generator().manual_seed(seed)
    clean_per_volume: list[dict[int, float]] = []
    adv_per_volume: list[dict[int, float]] = []
    rhos: list[float] = []
    folded = checked = 0
    seconds = 0.0
    attacked = 0
    successes = trials = 0
    for images, labels in volumes:
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels)
        clean = OverlapCounter(n_classes)
        clean_predictions: dict[int, torch.Tensor] = {}  # batch start -> f(x), the same for every sample
        adv_runs = []
        for sample in range(samples):
            adv = OverlapCounter(n_classes)
            for start in range(0, len(images), batch_size):
                x = torch.as_tensor(images[start:start + batch_size])[:, None].to(device)
                y = torch.as_tensor(labels[start:start + batch_size]).long().to(device)
                result = attack(x, y, target, rho, rng, organ_ids=organ_ids, **options)
                seconds += result.seconds
                attacked += x.shape[0]
                with torch.no_grad():
                    if sample == 0:
                        clean_predictions[start] = target(x).argmax(dim=1).cpu()
                        clean.add(clean_predictions[start], y.cpu())
                    pred_adv = target(result.adversarial).argmax(dim=1).cpu()
                pred_clean = clean_predictions[start]
                adv.add(pred_adv, result.warped_labels.cpu())
                s, t = slice_successes(pred_clean, y.cpu(), pred_adv, result.warped_labels.cpu(), n_classes)
                successes, trials = successes + s, trials + t
                rhos.extend(perceptibility_per_slice(result.adversarial, x).cpu().tolist())
                f, c = fold_count(result.displacement)
                folded, checked = folded + f, checked + c
                if progress is not None:
                    progress(x.shape[0])
            adv_runs.append(adv.dice())
        clean_per_volume.append(clean.dice())
        adv_per_volume.append({c: float(np.mean([run[c] for run in adv_runs])) for c in range(1, n_classes)})

    config = {"baseline": name, "rho": None if rho is None else float(rho),
              "organ_ids": None if organ_ids is None else [int(o) for o in organ_ids]}
    config.update({key: value for key, value in options.items()
                   if value is None or isinstance(value, (bool, int, float, str))})
    return {
        **summarise_dice(clean_per_volume, adv_per_volume, class_names),
        "rho": float(np.mean(rhos)) if rhos else math.nan,
        "fold_fraction": folded / checked if checked else 0.0,
        "config": config,
        "samples": samples,
        "temperature": None,
        "seed": seed,
        "volumes": len(volumes),
        "slices": sum(len(images) for images, _ in volumes),
        "seconds_per_slice": seconds / attacked if attacked else math.nan,
        "slice_success_rate": successes / trials if trials else math.nan,
    }
