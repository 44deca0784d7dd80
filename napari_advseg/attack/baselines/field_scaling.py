"""Rescaling of smooth fields to a perceptibility rho by bisection on one multiplier per slice.

Warping is nonlinear in the displacement, so the multiplier that gives a
slice the requested rho (Eq. 7) has no closed form and is searched for. The
smooth-field baselines use it to put fields of arbitrary size on the budget.
"""

from __future__ import annotations

import torch

from napari_advseg.attack.baselines.common import slice_norms
from napari_advseg.attack.fields import apply_fields, perceptibility_per_slice

__all__ = ["scale_fields_to_rho"]

_RHO_TOLERANCE = 1e-4
"""Relative accuracy (dimensionless) the bisection aims for on each slice's rho."""


def _measure(x: torch.Tensor, phi: torch.Tensor | None, bias: torch.Tensor | None,
             scale: torch.Tensor, input_range: tuple[float, float] | None = None) -> torch.Tensor:
    """Per-slice rho of ``apply_fields(x, scale * phi, scale * bias, input_range=input_range)``; ``scale`` is
    (N,)."""
    s = scale.reshape(-1, 1, 1, 1).to(x.dtype)
    adv = apply_fields(x, None if phi is None else phi * s, None if bias is None else bias * s,
                       input_range=input_range)
    return perceptibility_per_slice(adv, x)


@torch.no_grad()
def scale_fields_to_rho(x: torch.Tensor, phi: torch.Tensor | None, bias: torch.Tensor | None, rho: float,
                        max_iterations: int = 60, input_range: tuple[float, float] | None = None) -> torch.Tensor:
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
    input_range : (low, high) or None
        A window target's input range (:func:`~napari_advseg.attack.fields.apply_fields`): the fields
        applied as that target sees them.

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
        size = slice_norms(bias).clamp_min(1e-12)
        cap = torch.minimum(cap, 1e6 * slice_norms(x).clamp_min(1e-8) / size)

    lo = torch.zeros_like(ones)
    hi = torch.minimum(ones, cap)
    r_hi = _measure(x, phi, bias, hi, input_range)
    best, best_err = hi.clone(), (r_hi - rho).abs()
    # Bracket: grow hi until it overshoots (or hits the cap); the last undershoot becomes lo.
    for _ in range(max_iterations):
        grow = (r_hi < rho) & (hi < cap)
        if not grow.any():
            break
        lo = torch.where(grow, hi, lo)
        hi = torch.where(grow, torch.minimum(hi * 2.0, cap), hi)
        r_hi = _measure(x, phi, bias, hi, input_range)
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
        r_half = _measure(x, phi, bias, half, input_range)
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
        r_mid = _measure(x, phi, bias, mid, input_range)
        above = r_mid > rho
        hi = torch.where(reachable & above, mid, hi)
        lo = torch.where(reachable & ~above, mid, lo)
        err = (r_mid - rho).abs()
        better = reachable & (err < best_err)
        best, best_err = torch.where(better, mid, best), torch.where(better, err, best_err)
    return torch.where(reachable, best, hi)
