"""Smooth-field baselines: random and per-image optimised fields on a coarse control grid.

Both put their fields on the budget with
:func:`~napari_advseg.attack.baselines.field_scaling.scale_fields_to_rho`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from napari_advseg.attack.baselines.common import (
    AttackResult,
    attack_mask,
    check_inputs,
    per_slice,
    per_slice_masked_ce,
    per_slice_organ_ce,
    slice_norms,
    sync_device,
)
from napari_advseg.attack.baselines.field_scaling import scale_fields_to_rho
from napari_advseg.attack.config import FIELD_MODES
from napari_advseg.attack.fields import apply_fields, upsample_field, warp_labels
from napari_advseg.attack.volume_fields import smooth_along_z

__all__ = [
    "optimised_smooth_fields",
    "random_smooth_fields",
]


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


def _along_z(coarse: torch.Tensor | None, z_smooth: float) -> torch.Tensor | None:
    """Control points of consecutive slices smoothed by a Gaussian of ``z_smooth`` slices along z (0: as
    they are), as a 3D target's generator fields are (:func:`~napari_advseg.attack.volume_fields.smooth_along_z`)."""
    if coarse is None or z_smooth <= 0:
        return coarse
    return smooth_along_z(coarse, range(coarse.shape[0]), z_smooth)


def _check_fields(fields: str) -> None:
    if fields not in FIELD_MODES:
        raise ValueError(f"fields must be one of {FIELD_MODES}, got {fields!r}")


def _fit_field_pair(x: torch.Tensor, coarse_phi: torch.Tensor | None, coarse_b: torch.Tensor | None,
                    rho: float, input_range=None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Scale coarse control points so each field alone gives ``rho / sqrt(k)`` (k = fields used),
    then both together exactly ``rho``. Returns the scaled coarse tensors."""
    size = (x.shape[2], x.shape[3])
    used = (coarse_phi is not None) + (coarse_b is not None)
    share = rho / math.sqrt(used)
    if used == 2:
        phi, bias = _fields(coarse_phi, coarse_b, size)
        alone_phi = scale_fields_to_rho(x, phi, None, share, input_range=input_range)
        alone_b = scale_fields_to_rho(x, None, bias, share, input_range=input_range)
        coarse_phi, coarse_b = coarse_phi * per_slice(alone_phi, coarse_phi), coarse_b * per_slice(alone_b, coarse_b)
    phi, bias = _fields(coarse_phi, coarse_b, size)
    s = scale_fields_to_rho(x, phi, bias, rho, input_range=input_range)
    return (None if coarse_phi is None else coarse_phi * per_slice(s, coarse_phi),
            None if coarse_b is None else coarse_b * per_slice(s, coarse_b))


def _field_result(x: torch.Tensor, y: torch.Tensor, coarse_phi: torch.Tensor | None,
                  coarse_b: torch.Tensor | None, seconds: float, input_range=None) -> AttackResult:
    size = (x.shape[2], x.shape[3])
    phi, bias = _fields(coarse_phi, coarse_b, size)
    phi = torch.zeros_like(x).expand(-1, 2, -1, -1).clone() if phi is None else phi
    bias = torch.zeros_like(x) if bias is None else bias
    adversarial = apply_fields(x, phi, bias, input_range=input_range)
    return AttackResult(adversarial.detach(), phi.detach(), bias.detach(), warp_labels(y, phi.detach()), seconds)


# --------------------------------------------------------------------------
# random smooth fields
# --------------------------------------------------------------------------


@torch.no_grad()
def random_smooth_fields(x: torch.Tensor, y: torch.Tensor, rho: float, rng: torch.Generator,
                         control_spacing: int = 8, fields: str = "both",
                         input_range: tuple[float, float] | None = None, z_smooth: float = 0.0) -> AttackResult:
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
    input_range : (low, high) or None
        The target's input range (a window target's), the fields applied as
        that target sees them (:func:`~napari_advseg.attack.fields.apply_fields`).
    z_smooth : float
        For a 3D target (``x`` a volume's consecutive slices): a Gaussian of
        this many slices along z over the control points before the scaling,
        as the generator's fields get; 0: each slice's fields independent.

    Returns
    -------
    AttackResult
    """
    check_inputs(x, y, rho)
    _check_fields(fields)
    sync_device(x.device)
    start = time.perf_counter()
    n = x.shape[0]
    gh, gw = _coarse_size((x.shape[2], x.shape[3]), control_spacing)
    coarse_phi = _along_z(torch.randn(n, 2, gh, gw, generator=rng).to(x.device, x.dtype), z_smooth)
    coarse_b = _along_z(torch.randn(n, 1, gh, gw, generator=rng).to(x.device, x.dtype), z_smooth)
    coarse_phi, coarse_b = _fit_field_pair(x, coarse_phi if fields != "bias" else None,
                                           coarse_b if fields != "phi" else None, rho, input_range)
    result = _field_result(x, y, coarse_phi, coarse_b, 0.0, input_range)
    sync_device(x.device)
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------
# optimised smooth fields
# --------------------------------------------------------------------------


def optimised_smooth_fields(x: torch.Tensor, y: torch.Tensor, target, rho: float, steps: int,
                            rng: torch.Generator, control_spacing: int = 8, lr: float = 0.5,
                            organ_ids: Sequence[int] | None = None, mask_dilation: int = 3,
                            fields: str = "both", init_fraction: float = 0.1,
                            input_range: tuple[float, float] | None = None, z_smooth: float = 0.0,
                            organ_cap: float | None = None, organ_temperature: float | None = None
                            ) -> AttackResult:
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
    input_range : (low, high) or None
        The target's input range, as :func:`random_smooth_fields`.
    organ_cap : float or None
        None: the loss is Eq. 5 pooled over the organs' pixels (large organs
        weigh most). A number: organ by organ, each organ's CE capped at it
        and averaged over the organs (:func:`per_slice_organ_ce`), so the
        ascent turns to the organs still intact once one is broken.
    organ_temperature : float or None
        With ``organ_cap``: each slice's soft minimum over its organs' capped
        CEs instead of their mean (:func:`per_slice_organ_ce` with this
        temperature), so each slice's ascent goes to its least attacked
        organs. None: the mean.
    z_smooth : float
        For a 3D target: the control points that are optimised pass through
        a Gaussian of this many slices along z, then onto the budget (in
        every step, so each slice's points get gradient from its neighbours'
        losses and the result stays smooth across slices; the start is then
        on the budget, not at ``init_fraction``); 0: each slice on its own.

    Returns
    -------
    AttackResult
    """
    check_inputs(x, y, rho)
    _check_fields(fields)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    sync_device(x.device)
    start = time.perf_counter()
    n = x.shape[0]
    size = (x.shape[2], x.shape[3])
    gh, gw = _coarse_size(size, control_spacing)
    with torch.no_grad():
        draw_phi = _along_z(torch.randn(n, 2, gh, gw, generator=rng).to(x.device, x.dtype), z_smooth)
        draw_b = _along_z(torch.randn(n, 1, gh, gw, generator=rng).to(x.device, x.dtype), z_smooth)
        units: list[torch.Tensor] = []   # R per used field, (N,)
        init: list[torch.Tensor] = []
        for name, draw in (("phi", draw_phi), ("bias", draw_b)):
            if fields in (name, "both"):
                phi, bias = _fields(draw if name == "phi" else None, draw if name == "bias" else None, size)
                s = scale_fields_to_rho(x, phi, bias, rho, input_range=input_range)
                units.append(slice_norms(draw) * s)
                init.append(draw * per_slice(s, draw))
        if fields == "both":
            # Even share of the budget at the start, like the random baseline, then shrunk.
            phi, bias = _fields(init[0], init[1], size)
            s = scale_fields_to_rho(x, phi, bias, rho, input_range=input_range)
            init = [c * per_slice(s, c) for c in init]
        coords = [c * init_fraction / per_slice(r.clamp_min(1e-12), c) for c, r in zip(init, units)]

    def pair(cs: list[torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if fields == "both":
            return cs[0], cs[1]
        return (cs[0], None) if fields == "phi" else (None, cs[0])

    def to_coarse(us: list[torch.Tensor], along_z: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        cs = [u * per_slice(r, u) for u, r in zip(us, units)]
        if along_z and z_smooth > 0:  # smoothing mixes the slices' sizes: back onto the budget after it
            cs = [_along_z(c, z_smooth) for c in cs]
            with torch.no_grad():  # a constant factor per slice
                s = scale_fields_to_rho(x, *_fields(*pair(cs), size), rho, input_range=input_range)
            cs = [c * per_slice(s, c) for c in cs]
        return pair(cs)

    def loss_of(us: list[torch.Tensor]) -> torch.Tensor:
        phi, bias = _fields(*to_coarse(us), size)
        x_adv = apply_fields(x, phi, bias, input_range=input_range)
        y_adv = y if phi is None else warp_labels(y, phi.detach())
        if organ_cap is not None:
            return per_slice_organ_ce(target(x_adv), y_adv, organ_ids, mask_dilation, organ_cap, organ_temperature)
        mask = attack_mask(y_adv, organ_ids, mask_dilation)
        return per_slice_masked_ce(target(x_adv), y_adv, mask)

    def rescale(us: list[torch.Tensor]) -> list[torch.Tensor]:
        """The iterate back onto the budget (before any smoothing along z, so each step keeps its size)."""
        phi, bias = _fields(*to_coarse(us, along_z=False), size)
        s = scale_fields_to_rho(x, phi, bias, rho, input_range=input_range)
        return [u * per_slice(s, u) for u in us]

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
                best = [torch.where(per_slice(better, b), c.detach(), b) for b, c in zip(best, current)]
            total = torch.stack([slice_norms(g) ** 2 for g in grads]).sum(dim=0).sqrt().clamp_min(1e-12)
            coords = rescale([c.detach() + lr * g / per_slice(total, g) for c, g in zip(current, grads)])
    with torch.no_grad():
        loss = loss_of(coords).to(x.device)
        better = loss > best_loss
        best = [torch.where(per_slice(better, b), c, b) for b, c in zip(best, coords)]
        result = _field_result(x, y, *to_coarse(best), 0.0, input_range)
    sync_device(x.device)
    result.seconds = time.perf_counter() - start
    return result
